"""How an array of any shape splits into YX planes and channel groups: :class:`PlaneLayout`.

The one home of the rule that :meth:`~rnon_engine.inference.Inpainter.inpaint`, fine-tuning
(:func:`~rnon_engine.train.finetune.training_planes`), the napari plugin and ``rnon-batch``
share:

- the channel axis: ``"auto"`` means none for 2-D arrays, the last axis for 3-D ones, and
  must be given for 4-D and up; an int names it; None means there is none;
- the spatial (Y, X) axes are the last two other axes; every axis before them is a leading
  (plane) axis (Z, T, ...), repaired plane by plane;
- channel groups: RGB and RGBA are one group (the first 3 channels; alpha is copied), any
  other number of channels is one group per channel, no channel axis is one group;
- a mask has the spatial shape (one mask broadcast to every plane) or the leading + spatial
  shape (one mask per plane).

A layout is built from a shape alone (no pixels are read), so a batch plan or a training
set can use it before opening any data. Numpy only: no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnon_engine.errors import InputError

__all__ = ["ChannelGroup", "PlaneLayout", "PlaneIndex"]

PlaneIndex = tuple[int, ...]
"""Index of one YX plane: a value for each leading axis (``()`` for a single plane)."""

ChannelGroup = slice | None
"""Channels repaired together, as a slice of the channels-last axis (None: no channel axis)."""


@dataclass(frozen=True)
class PlaneLayout:
    """The planes and channel groups of an array of ``shape``.

    Build one with :meth:`of` (which applies the ``"auto"`` rule and checks the
    arguments); the constructor takes an already normalised channel axis and checks it.

    Attributes:
        shape: The array's full shape.
        channel_axis: The channel axis as a non-negative index, or None.

    Raises:
        InputError: Too few dimensions for the channel axis, or it is out of range.
    """

    shape: tuple[int, ...]
    channel_axis: int | None

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        object.__setattr__(self, "shape", shape)
        nd = len(shape)
        ch = self.channel_axis
        if ch is None:
            if nd < 2:
                raise InputError(f"image must have at least 2 dimensions, got shape {shape}")
            return
        if nd < 3:
            raise InputError(
                f"an image with a channel axis needs at least 3 dimensions, got shape {shape}"
            )
        if not 0 <= ch < nd:
            raise InputError(f"channel_axis {ch} is out of range for shape {shape}")

    @classmethod
    def of(cls, shape: tuple[int, ...], channel_axis: int | str | None = "auto") -> PlaneLayout:
        """The layout of an array of ``shape`` with ``channel_axis`` as ``inpaint`` takes it.

        Args:
            shape: The array's shape.
            channel_axis: ``"auto"`` (2-D: none, 3-D: last, 4-D and up: refused), an int
                (negative counts from the end) or None (no channel axis).

        Raises:
            InputError: ``channel_axis`` is not acceptable for ``shape``; the message says
                what to pass.
        """
        shape = tuple(int(s) for s in shape)
        nd = len(shape)
        if isinstance(channel_axis, str):
            if channel_axis != "auto":
                raise InputError(
                    f"channel_axis must be 'auto', an int or None, got {channel_axis!r}"
                )
            if nd == 2:
                return cls(shape, None)
            if nd == 3:
                return cls(shape, 2)
            if nd < 2:
                raise InputError(f"image must have at least 2 dimensions, got shape {shape}")
            raise InputError(
                f"image has {nd} dimensions {shape}: say which axis holds the channels with "
                "channel_axis=<int> (or channel_axis=None if there is none); the last two "
                "other axes are taken as Y, X and the rest as leading (Z/T) axes"
            )
        if channel_axis is None:
            return cls(shape, None)
        if isinstance(channel_axis, bool) or not isinstance(channel_axis, int | np.integer):
            raise InputError(f"channel_axis must be 'auto', an int or None, got {channel_axis!r}")
        if nd < 3:
            raise InputError(
                f"an image with a channel axis needs at least 3 dimensions, got shape {shape}"
            )
        if not -nd <= channel_axis < nd:
            raise InputError(f"channel_axis {channel_axis} is out of range for shape {shape}")
        return cls(shape, int(channel_axis) % nd)

    # ------------------------------------------------------------------ axes
    @property
    def ndim(self) -> int:
        """Number of dimensions of the array."""
        return len(self.shape)

    @property
    def _other_axes(self) -> list[int]:
        return [a for a in range(self.ndim) if a != self.channel_axis]

    @property
    def spatial(self) -> tuple[int, int]:
        """The plane size (Y, X): the last two axes other than the channel axis."""
        axes = self._other_axes
        return self.shape[axes[-2]], self.shape[axes[-1]]

    @property
    def leading(self) -> tuple[int, ...]:
        """Shape of the axes before Y, X (empty for a single plane)."""
        return tuple(self.shape[a] for a in self._other_axes[:-2])

    @property
    def n_channels(self) -> int:
        """Size of the channel axis; 0 when there is none."""
        return 0 if self.channel_axis is None else self.shape[self.channel_axis]

    @property
    def groups(self) -> list[ChannelGroup]:
        """Channel groups repaired together, as slices of the channels-last axis.

        ``[None]`` without a channel axis, ``[slice(0, 3)]`` for RGB and RGBA (alpha is
        not repaired), one ``slice(c, c + 1)`` per channel otherwise.
        """
        n = self.n_channels
        if self.channel_axis is None:
            return [None]
        if n in (3, 4):
            return [slice(0, 3)]
        return [slice(c, c + 1) for c in range(n)]

    @property
    def planes(self) -> list[PlaneIndex]:
        """Every plane index in C order (``[()]`` for a single plane)."""
        if not self.leading:
            return [()]
        return [tuple(int(i) for i in idx) for idx in np.ndindex(*self.leading)]

    @property
    def n_planes(self) -> int:
        """Number of YX planes (channels count once)."""
        return math.prod(self.leading)

    @property
    def plane_shape(self) -> tuple[int, ...]:
        """One plane channels-last: ``(Y, X)`` or ``(Y, X, C)``."""
        if self.channel_axis is None:
            return self.spatial
        return (*self.spatial, self.n_channels)

    @property
    def plane_channel_axis(self) -> int | None:
        """The ``channel_axis`` of one plane of :meth:`channels_last`: -1, or None."""
        return None if self.channel_axis is None else -1

    @property
    def mask_shape(self) -> tuple[int, ...]:
        """The shape of a mask with one plane per image plane: leading + spatial."""
        return (*self.leading, *self.spatial)

    def channels_last(self, array: Any) -> Any:
        """``array`` (of this layout's shape) with its channel axis moved last (a view)."""
        ch = self.channel_axis
        if ch is None or ch == self.ndim - 1:
            return array
        return np.moveaxis(array, ch, -1)

    # ------------------------------------------------------------------ masks
    def mask_per_plane(self, mask_shape: tuple[int, ...]) -> bool | None:
        """Whether a mask of ``mask_shape`` holds one mask per plane.

        Returns:
            False for the spatial shape (one mask for every plane), True for the leading +
            spatial shape of a stack, None when the shape fits neither.
        """
        mask_shape = tuple(int(s) for s in mask_shape)
        if mask_shape == self.spatial:
            return False
        if mask_shape == self.mask_shape:
            return True
        return None

    def check_mask(self, mask: np.ndarray) -> bool:
        """Check a mask (nonzero = repair) against this layout.

        Returns:
            True if it holds one mask per plane, False if one mask is broadcast to all.

        Raises:
            InputError: Not boolean or numeric, NaN values, or a shape that fits neither
                form; the message gives the expected shapes and, where the image looks
                channels-first or like a stack, the ``channel_axis`` to pass.
        """
        if mask.dtype.kind not in "buif":
            raise InputError(
                f"mask must be boolean or numeric (nonzero = repair), got {mask.dtype}"
            )
        if mask.dtype.kind == "f" and np.isnan(mask).any():
            raise InputError("mask contains NaN; use 0 for pixels to keep and nonzero to repair")
        per_plane = self.mask_per_plane(mask.shape)
        if per_plane is not None:
            return per_plane
        shape, spatial, leading = self.shape, self.spatial, self.leading
        hint = ""
        if self.channel_axis is not None and shape[:-1] == mask.shape:
            pass
        elif len(shape) == 3 and mask.shape == shape[1:]:
            hint = " (a Z/T stack? pass channel_axis=None)"
            if shape[0] in (3, 4):
                hint = (
                    f" (channels first, e.g. {'RGB' if shape[0] == 3 else 'RGBA'} as C×Y×X? "
                    "pass channel_axis=0; a Z/T stack of grayscale planes? pass "
                    "channel_axis=None)"
                )
        planes = f" or {(*leading, *spatial)} (one per plane)" if leading else ""
        raise InputError(
            f"mask shape {mask.shape} does not match image shape {shape}: expected "
            f"{spatial} (Y, X){planes}{hint}"
        )
