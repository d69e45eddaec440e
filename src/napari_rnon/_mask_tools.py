"""Masks without painting: pixels of a value or range, hot/dead pixels, grow and shrink.

Pure numpy and scikit-image (no Qt, no napari, no torch). The Inpaint widget's "Mask
tools" apply these to the chosen image and write the result into the mask layer.

The value rule is ``rnon-batch --mask-value``'s: a pixel is repaired when it equals the
value, in any channel of an RGB image; here a range (both ends included) and NaN are
accepted too.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from napari_rnon._planes import UserError

__all__ = [
    "ValueRule",
    "grow_shrink",
    "hot_pixel_mask",
    "parse_value_rule",
    "value_mask",
]

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf"
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*(?:\.\.|to)\s*({_NUMBER})\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ValueRule:
    """Which pixel values are bad: ``low <= v <= high``, or NaN when ``nan`` is True."""

    low: float = math.nan
    high: float = math.nan
    nan: bool = False

    def describe(self) -> str:
        """The rule in words, for messages."""
        if self.nan:
            return "NaN"
        if self.low == self.high:
            return f"= {self.low:g}"
        return f"in {self.low:g}..{self.high:g}"


def parse_value_rule(text: str) -> ValueRule:
    """Read ``"65535"``, ``"0..10"``, ``"4000 to 65535"`` or ``"nan"``.

    Raises:
        UserError: The text is none of these; the message shows the accepted forms.
    """
    t = str(text).strip()
    if t.lower() == "nan":
        return ValueRule(nan=True)
    m = _RANGE.match(t)
    try:
        if m:
            low, high = float(m.group(1)), float(m.group(2))
            if low > high:
                low, high = high, low
            return ValueRule(low, high)
        v = float(t)
    except ValueError:
        v = math.nan
    if math.isnan(v):
        raise UserError(
            f"Value {text!r} is not understood: write a number (65535), a range with both "
            "ends included (0..10 or 4000 to 65535), or nan."
        )
    return ValueRule(v, v)


def value_mask(data: np.ndarray, rule: ValueRule, *, rgb: bool = False) -> np.ndarray:
    """Boolean mask of the pixels ``rule`` selects; any channel counts for RGB data.

    Args:
        data: Image values, any shape; with ``rgb`` the last axis is colour.
        rule: From :func:`parse_value_rule`.
        rgb: Whether the last axis holds colour channels (it is reduced with ``any``).
    """
    a = np.asarray(data)
    if rule.nan:
        m = np.isnan(a) if a.dtype.kind in "fc" else np.zeros(a.shape, bool)
    elif rule.low == rule.high:
        m = a == rule.low
    else:
        m = (a >= rule.low) & (a <= rule.high)
    return m.any(axis=-1) if rgb else m


def _robust_z(plane: np.ndarray) -> np.ndarray:
    """How far each pixel is from its 3×3 median, in robust standard deviations.

    The scale is 1.4826 × the median absolute deviation of the residuals (a Gaussian's
    sigma); where more than half of them are 0 (flat or quantised images), the mean
    absolute deviation is used instead, and a flat image gives 0 everywhere.
    """
    from skimage.filters import median

    p = np.asarray(plane, dtype=np.float64)
    finite = np.isfinite(p)
    if not finite.all():
        fill = float(np.median(p[finite])) if finite.any() else 0.0
        p = np.where(finite, p, fill)
    residual = p - median(p, footprint=np.ones((3, 3), bool), mode="reflect")
    centred = residual - np.median(residual)
    scale = 1.4826 * float(np.median(np.abs(centred)))
    if scale == 0.0:
        scale = 1.2533 * float(np.mean(np.abs(centred)))
    if scale == 0.0:
        return np.zeros(p.shape)
    return centred / scale


def hot_pixel_mask(
    planes: np.ndarray, *, threshold: float = 6.0, across_planes: bool = False
) -> np.ndarray:
    """Hot and dead pixels: pixels far from their 3×3 neighbourhood median.

    A pixel is flagged when its robust z-score (:func:`_robust_z`, per plane) exceeds
    ``threshold`` in absolute value. ``across_planes`` flags only pixels that are off in
    the same place through the stack (the median of their z-scores over the planes exceeds
    the threshold): a camera's defects, not a bright cell in one plane.

    Args:
        planes: ``(Y, X)`` or ``(N, Y, X)`` grayscale values.
        threshold: In robust standard deviations (6 keeps false alarms rare in noise).
        across_planes: Combine the planes into one ``(Y, X)`` mask.

    Returns:
        Boolean ``(Y, X)`` with ``across_planes`` (or for ``(Y, X)`` input), else
        ``(N, Y, X)``.
    """
    if threshold <= 0:
        raise UserError(f"The threshold must be above 0 (robust sigmas), not {threshold}.")
    a = np.asarray(planes)
    if a.ndim == 2:
        return np.abs(_robust_z(a)) > threshold
    z = np.stack([_robust_z(p) for p in a])
    if across_planes:
        return np.abs(np.median(z, axis=0)) > threshold
    return np.abs(z) > threshold


def grow_shrink(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow (``pixels`` > 0) or shrink (< 0) a boolean mask by a disk, in each YX plane."""
    from skimage.morphology import dilation, disk, erosion

    m = np.asarray(mask, dtype=bool)
    if pixels == 0:
        return m.copy()
    footprint = disk(abs(int(pixels))).astype(bool)
    op = dilation if pixels > 0 else erosion
    if m.ndim == 2:
        return op(m, footprint)
    flat = m.reshape(-1, *m.shape[-2:])
    return np.stack([op(p, footprint) for p in flat]).reshape(m.shape)
