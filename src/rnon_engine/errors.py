"""Exceptions raised by the engine.

Every error that a user can cause (bad input, bad configuration, a missing or foreign
weights file) derives from :class:`RnonError`, so front ends (napari, ``rnon-batch``,
``training.run``) can show its message as it is, without a traceback.
"""

from __future__ import annotations


class RnonError(Exception):
    """Base class for errors a user can act on; the message says what to do."""


class InputError(RnonError, ValueError):
    """An image, mask or argument is not acceptable (wrong shape, dtype, values)."""


class WeightsError(RnonError):
    """A weights file is missing, corrupt, truncated, foreign or does not match its model."""


class ConfigError(RnonError, ValueError):
    """A configuration names an unknown key or holds a bad value."""


class Cancelled(RnonError):
    """A long operation stopped because its ``cancel()`` callback returned True."""


class OutputError(RnonError):
    """An output cannot be written (no space left, no permission); finished work is kept."""
