"""Map image intensities to the networks' [0, 1] range and back.

The mapping is computed **once per plane** (one 2-D image, or one RGB image, or one
channel of a multichannel image) from the *valid* pixels of that plane (``mask == 0``),
never per tile, so neighbouring tiles agree.

- ``uint8``: the fixed mapping ``v / 255`` (photographs are already in that range).
- every other integer type (``uint16`` microscopy, ``int16``, ...) and floats: a robust
  min/max of the plane's valid pixels, ``lo`` = 0.1th and ``hi`` = 99.9th percentile,
  ``x = clip((v - lo) / (hi - lo), 0, 1)``. Microscopy data rarely fills its container's
  range (12-bit cameras in ``uint16``, a few hundred counts over a dark offset), so the
  container range would squeeze the signal into a few grey levels; percentiles also keep a
  few hot pixels from setting the scale. For RGB the three channels share one ``lo, hi``
  (so colours are not shifted). The percentiles are taken on a regular subsample of at most
  about four million valid pixels.

Back: ``v = lo + x * (hi - lo)``, clipped to ``[lo, hi]`` (a fill never leaves the range of
the plane's known pixels), rounded to nearest for integer types and cast to the input
dtype. Only pixels under the mask are ever written back, so the rest of the image keeps its
exact values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnon_engine.errors import InputError

__all__ = ["IntensityMap", "intensity_map", "check_dtype", "PERCENTILES"]

PERCENTILES = (0.1, 99.9)
_MAX_SAMPLES = 4_000_000


def check_dtype(dtype: np.dtype) -> None:
    """Raise :class:`InputError` unless ``dtype`` is an integer or float type.

    Args:
        dtype: The image's dtype.
    """
    dtype = np.dtype(dtype)
    if dtype == np.bool_ or dtype.kind not in "uif":
        raise InputError(
            f"images of dtype {dtype} are not supported; give an integer (uint8, uint16, ...) "
            "or float (float32, float64) image"
        )


@dataclass(frozen=True)
class IntensityMap:
    """A linear map between a plane's values and [0, 1].

    Attributes:
        lo: Value mapped to 0.
        hi: Value mapped to 1 (``hi == lo`` for a constant plane: everything maps to 0 and
            fills come back as ``lo``).
        dtype: The image dtype that :meth:`from_unit` returns.
    """

    lo: float
    hi: float
    dtype: np.dtype

    def to_unit(self, values: np.ndarray) -> np.ndarray:
        """Map ``values`` (any shape) to float32 in [0, 1]."""
        x = values.astype(np.float32)
        scale = self.hi - self.lo
        if scale <= 0:
            return np.zeros_like(x)
        x -= np.float32(self.lo)
        x *= np.float32(1.0 / scale)
        return np.clip(x, 0.0, 1.0, out=x)

    def from_unit(self, x: np.ndarray) -> np.ndarray:
        """Map float values in [0, 1] back to the image dtype (rounded and clipped)."""
        v = x.astype(np.float64) * (self.hi - self.lo) + self.lo
        np.clip(v, self.lo, self.hi, out=v)
        if self.dtype.kind in "ui":
            info = np.iinfo(self.dtype)
            np.rint(v, out=v)
            np.clip(v, info.min, info.max, out=v)
        return v.astype(self.dtype)


def intensity_map(plane: np.ndarray, valid: np.ndarray) -> IntensityMap:
    """Compute the mapping of one plane from its valid pixels.

    Args:
        plane: ``H×W`` or ``H×W×C`` values (C channels share the mapping).
        valid: ``H×W`` bool, True where the pixel is known (not to be repaired).

    Returns:
        The plane's :class:`IntensityMap`.
    """
    dtype = np.dtype(plane.dtype)
    check_dtype(dtype)
    if dtype == np.uint8:
        return IntensityMap(0.0, 255.0, dtype)
    h, w = valid.shape
    step = max(1, int(np.ceil(np.sqrt(h * w / _MAX_SAMPLES))))
    sample = plane[::step, ::step][valid[::step, ::step]]
    if sample.size == 0:  # the valid pixels all fall between the grid points
        sample = plane[valid]
    lo, hi = np.percentile(sample.astype(np.float64), PERCENTILES)
    return IntensityMap(float(lo), float(max(hi, lo)), dtype)
