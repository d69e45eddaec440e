"""Repair masks of ``rnon-batch``: how a mask lines up with INPUT, and any window of it.

A mask may have INPUT's full shape, INPUT's shape without its colour axis, or any trailing
part of that (at least YX), which is broadcast over the leading axes. A mask image file with
a colour axis (an RGB PNG) is reduced with ``any``. With ``--mask-value`` the mask is
``INPUT == value`` (any channel of colour data).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnon_engine.batch.axes import colour_axis, default_axes
from rnon_engine.batch.io import ArrayRef, ImageInfo, describe_input
from rnon_engine.batch.regions import read_region
from rnon_engine.errors import InputError

__all__ = ["MaskInfo", "describe_mask", "fit_mask", "mask_window", "image_file_mask"]


@dataclass(frozen=True)
class MaskInfo:
    """How to get the repair mask of any window of INPUT.

    Attributes:
        ref: The mask array, or None when the mask is ``INPUT == value``.
        value: The ``--mask-value``, or None.
        dims: For each mask dimension (after dropping ``reduce_axis``), the INPUT
            dimension it lines up with; INPUT dimensions not listed are broadcast.
        reduce_axis: A mask axis reduced with ``any`` (the mask's own colour axis).
        shape: The mask's shape.
    """

    ref: ArrayRef | None
    value: float | None = None
    dims: tuple[int, ...] = ()
    reduce_axis: int | None = None
    shape: tuple[int, ...] = ()

    @property
    def broadcast(self) -> bool:
        """True when the same mask applies to several planes (it lacks leading axes)."""
        return self.ref is not None and len(self.dims) == 2


def fit_mask(
    mshape: tuple[int, ...], mask_colour: int | None, image: ImageInfo, ref: ArrayRef | None
) -> MaskInfo:
    """Say how a mask of shape ``mshape`` lines up with ``image`` (see the module docstring).

    Args:
        mshape: The mask's shape.
        mask_colour: The mask's own colour axis (reduced with ``any``), or None.
        image: INPUT's description.
        ref: Where the mask is.

    Raises:
        InputError: the shapes do not fit.
    """
    keep = [i for i in range(len(image.shape)) if i != image.color_axis]
    spatial = tuple(image.shape[i] for i in keep)
    if mshape == image.shape:
        if image.color_axis is not None:
            return MaskInfo(ref, None, tuple(keep), image.color_axis, mshape)
        return MaskInfo(ref, None, tuple(range(len(mshape))), None, mshape)
    core = tuple(s for i, s in enumerate(mshape) if i != mask_colour)
    n = len(core)
    if 2 <= n <= len(spatial) and core == spatial[len(spatial) - n :]:
        dims = tuple(keep[len(keep) - n :])
        if image.y not in dims or image.x not in dims:
            raise InputError(
                f"MASK shape {mshape} lines up with INPUT's trailing axes, but those are not "
                f"Y and X (INPUT axes {image.axes!r}); give a mask of INPUT's full shape."
            )
        return MaskInfo(ref, None, dims, mask_colour, mshape)
    raise InputError(
        f"MASK shape {mshape} does not fit INPUT shape {image.shape} (axes {image.axes!r}): "
        f"a mask must have INPUT's shape, or its trailing YX shape {spatial[-2:]} (broadcast "
        "over the leading axes), or a trailing part of it."
    )


def describe_mask(path: str | os.PathLike, image: ImageInfo) -> MaskInfo:
    """Check that the mask at ``path`` fits ``image`` and say how it lines up."""
    m = describe_input(path, what="MASK")
    return fit_mask(m.shape, m.color_axis if m.form == "image" else None, image, m.ref)


def image_file_colour(shape: tuple[int, ...]) -> int | None:
    """The colour axis of a mask image file of ``shape`` (a trailing 3 or 4), or None."""
    if len(shape) < 2:
        return None
    return colour_axis(default_axes(shape, image_file=True), shape, True)


def mask_window(
    info: MaskInfo, image: ImageInfo, window: tuple[slice, ...], mask_arr: Any, data: Any
) -> np.ndarray:
    """Boolean repair mask of ``window`` of INPUT, with INPUT's dimensions.

    The colour axis (if any) has length 1; broadcast axes have length 1 too.

    Args:
        info: From :func:`describe_mask`.
        image: INPUT's description.
        window: Slices into INPUT.
        mask_arr: The opened mask array (unused with ``--mask-value``).
        data: INPUT's values in ``window`` (only used with ``--mask-value``; may be None
            otherwise).
    """
    if info.ref is None:
        m = np.asarray(data) == info.value
        if image.color_axis is not None:
            m = m.any(axis=image.color_axis, keepdims=True)
        return m
    idx: list[Any] = []
    order = list(info.dims)
    if info.reduce_axis is not None:
        order.insert(info.reduce_axis, -1)
    for d in order:
        idx.append(slice(None) if d < 0 else window[d])
    m = read_region(mask_arr, info.ref, tuple(idx), "MASK") != 0
    if info.reduce_axis is not None:
        m = m.any(axis=info.reduce_axis)
    shape = [1] * len(image.shape)
    for axis, d in enumerate(info.dims):
        shape[d] = m.shape[axis]
    return m.reshape(shape)


def image_file_mask(
    image: ImageInfo,
    mask: np.ndarray | None,
    mask_path: str | None,
    value: float | None,
    data: np.ndarray,
) -> np.ndarray:
    """The boolean repair mask of a whole image file (folder and single-image modes).

    Args:
        image: The image file's description.
        mask: The mask file's pixels, or None with ``--mask-value``.
        mask_path: The mask file (named in errors).
        value: The ``--mask-value``.
        data: The image's pixels (read with ``--mask-value``).
    """
    whole = tuple(slice(None) for _ in image.shape)
    if mask is None:
        return mask_window(MaskInfo(None, value), image, whole, None, data)
    mshape = tuple(int(s) for s in mask.shape)
    try:
        info = fit_mask(mshape, image_file_colour(mshape), image, ArrayRef("image", str(mask_path)))
    except InputError as exc:
        raise InputError(
            f"mask {mask_path!r} has shape {mshape} but image {image.path!r} has shape "
            f"{image.shape}; a mask must have the image's shape or its YX shape. ({exc})"
        ) from exc
    return mask_window(info, image, whole, mask, None)
