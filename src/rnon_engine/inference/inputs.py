"""Turn what a caller passed as an image or a mask into a numpy array, or say why not.

``np.asarray`` accepts almost anything and fails late or obscurely (a tensor that
requires grad raises a torch ``RuntimeError``, a ragged list a numpy ``ValueError``,
``None`` becomes an object array). :func:`as_array` refuses each of these up front with an
:class:`~rnon_engine.errors.InputError` that says what to pass instead; :func:`check_out`
does the same for an array given to write the result into.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rnon_engine.errors import InputError

__all__ = ["as_array", "check_out", "into"]


def as_array(value: Any, what: str) -> np.ndarray:
    """``value`` as a numpy array (no copy when it already is one).

    Accepts numpy arrays, anything with ``__array__`` (dask and zarr arrays are read in
    full), CPU torch tensors that do not require grad, and rectangular nested lists of
    numbers.

    Args:
        value: The image or mask as given.
        what: ``"image"`` or ``"mask"``, for the message.

    Raises:
        InputError: ``value`` is None, a string, a tensor that requires grad or lives on
            another device, or a ragged sequence.
    """
    if isinstance(value, np.ndarray):
        return value
    if value is None:
        raise InputError(f"{what} is None; give a numpy array")
    if isinstance(value, str | bytes):
        raise InputError(
            f"{what} is the string {value!r}, not an array; read the file first "
            "(e.g. with tifffile.imread or skimage.io.imread) and pass the array"
        )
    if type(value).__module__.startswith("torch"):
        return _from_tensor(value, what)
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise InputError(
            f"{what} is not a rectangular array of numbers (a nested list whose rows differ "
            "in length?); give a numpy array, or a nested list with rows of equal length"
        ) from None
    if array.dtype == object:
        raise InputError(
            f"{what} holds Python objects (a ragged or mixed sequence?), not numbers; give a "
            "numeric numpy array"
        )
    return array


def _from_tensor(tensor: Any, what: str) -> np.ndarray:
    """A torch tensor as a numpy array, refusing the ones numpy cannot take as they are."""
    if getattr(tensor, "requires_grad", False):
        raise InputError(
            f"{what} is a torch tensor that requires grad; pass {what}.detach().cpu().numpy() "
            "(inpainting does not propagate gradients)"
        )
    device = getattr(tensor, "device", None)
    if device is not None and getattr(device, "type", "cpu") != "cpu":
        raise InputError(
            f"{what} is a torch tensor on {device}; pass {what}.cpu().numpy() "
            "(the image is read on the CPU)"
        )
    try:
        return tensor.numpy()
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"{what} is a torch tensor numpy cannot read ({exc})") from None


def check_out(out: Any, image: np.ndarray) -> None:
    """Refuse an ``out`` array the result of repairing ``image`` cannot be written into.

    ``out`` may be None (a new array is made), ``image`` itself (repaired in place), or a
    writeable numpy array of the image's shape and dtype that does not overlap it.

    Raises:
        InputError: What is wrong with ``out``.
    """
    if out is None:
        return
    if not isinstance(out, np.ndarray):
        raise InputError(
            f"out must be a numpy array to write the result into, got {type(out).__name__}"
        )
    if out.shape != image.shape or out.dtype != image.dtype:
        raise InputError(
            f"out has shape {out.shape} and dtype {out.dtype}, the image {image.shape} and "
            f"{image.dtype}: give an array like the image (np.empty_like(image)), or the "
            "image itself to repair it in place"
        )
    if not out.flags.writeable:
        raise InputError("out is read-only; give a writeable array")
    if out is not image and np.may_share_memory(out, image):
        raise InputError(
            "out overlaps the image without being it: give the image itself (in place) or "
            "an array of its own"
        )


def into(out: np.ndarray, image: np.ndarray) -> np.ndarray:
    """``out`` holding ``image``'s values (nothing to copy when it is the image); ``out``."""
    if out is not image:
        np.copyto(out, image)
    return out
