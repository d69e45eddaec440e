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

Precision: the map never overflows and never loses the plane's range, whatever its
magnitude or offset. Floats are mapped in float64 (``longdouble`` in its own precision)
after scaling by a power of two that brings ``max(|lo|, |hi|)`` into [0.5, 1) (exact), so
``1e299`` or ``1e-45`` data and a tiny range on a large offset keep their resolution; only
the final ``x`` is float32. 64-bit integers (``int64``, ``uint64``) take ``lo`` and ``hi``
as exact order statistics (the nearest valid values at those percentiles) and are mapped as
exact integer offsets from ``lo``, since float64 cannot hold every 64-bit value.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

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
        lo: Value mapped to 0 (a Python ``int`` for 64-bit integer dtypes, exact).
        hi: Value mapped to 1 (``hi == lo`` for a constant plane: everything maps to 0 and
            fills come back as ``lo``).
        dtype: The image dtype that :meth:`from_unit` returns.
    """

    lo: float
    hi: float
    dtype: np.dtype

    @property
    def exact_integers(self) -> bool:
        """True for 64-bit integer dtypes, mapped as exact integer offsets from ``lo``."""
        return self.dtype.kind in "ui" and self.dtype.itemsize == 8

    def _float_frame(self) -> tuple[np.dtype, int, float, float]:
        """Working float dtype, the power-of-two exponent, and ``lo``, ``hi`` scaled by it."""
        work = (
            np.promote_types(self.dtype, np.float64) if self.dtype.kind == "f" else np.dtype("f8")
        )
        lo, hi = work.type(self.lo), work.type(self.hi)
        top = max(abs(lo), abs(hi))
        exp = int(np.frexp(top)[1]) if top > 0 else 0
        return work, exp, np.ldexp(lo, -exp), np.ldexp(hi, -exp)

    def to_unit(self, values: np.ndarray) -> np.ndarray:
        """Map ``values`` (any shape) to float32 in [0, 1]."""
        values = np.asarray(values)
        if values.dtype == self.dtype and self.dtype.kind in "ui" and self.dtype.itemsize <= 2:
            # Every value of an 8- or 16-bit type, mapped once: the same numbers by lookup.
            table = self._table
            offset = int(np.iinfo(self.dtype).min)
            return table[values if offset == 0 else values.astype(np.int32) - offset]
        return self._map(values)

    @cached_property
    def _table(self) -> np.ndarray:
        """:meth:`to_unit` of every value of :attr:`dtype` (8 or 16 bits), in order."""
        info = np.iinfo(self.dtype)
        return self._map(np.arange(info.min, int(info.max) + 1, dtype=self.dtype))

    def _map(self, values: np.ndarray) -> np.ndarray:
        """:meth:`to_unit`, computed value by value."""
        if self.hi <= self.lo:
            return np.zeros(np.shape(values), np.float32)
        if self.exact_integers:
            offset = _offsets(values, self.lo, self.hi)
            x = offset.astype(np.float64)
            x /= float(self.hi - self.lo)
        else:
            work, exp, lo, hi = self._float_frame()
            with np.errstate(over="ignore", invalid="ignore"):
                x = np.ldexp(values.astype(work), -exp)  # exact: a power of two
                x -= lo
                x /= hi - lo  # no overflow: |lo|, |hi| < 1
        return np.clip(x, 0.0, 1.0, out=x).astype(np.float32)

    def from_unit(self, x: np.ndarray) -> np.ndarray:
        """Map float values in [0, 1] back to the image dtype (rounded and clipped)."""
        if self.exact_integers:
            span = self.hi - self.lo
            unit = np.clip(x.astype(np.float64), 0.0, 1.0)
            off = np.rint(unit * float(span))
            # float(span) may round above span (and 2**64 above uint64): clip as integers.
            np.minimum(off, np.nextafter(2.0**64, 0), out=off)
            steps = np.minimum(off.astype(np.uint64), np.uint64(span))
            steps[unit >= 1.0] = span  # hi exactly
            native = (steps + np.uint64(self.lo % 2**64)).view(self.dtype.newbyteorder("="))
            return native.astype(self.dtype)
        work, exp, lo, hi = self._float_frame()
        v = np.ldexp(lo + x.astype(work) * (hi - lo), exp)
        np.clip(v, self.lo, self.hi, out=v)
        if self.dtype.kind in "ui":
            info = np.iinfo(self.dtype)
            np.rint(v, out=v)
            np.clip(v, info.min, info.max, out=v)
        return v.astype(self.dtype)


def _offsets(values: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``clip(values, lo, hi) - lo`` of 64-bit integers, exact, as uint64."""
    values = np.asarray(values)
    native = values.dtype.newbyteorder("=")
    clipped = np.clip(values, native.type(lo), native.type(hi)).astype(native, copy=False)
    unsigned = clipped.view(np.uint64)
    return unsigned - np.uint64(lo % 2**64)  # wraps modulo 2**64: exact, as 0 <= v - lo < 2**64


def intensity_map(
    plane: np.ndarray, valid: np.ndarray | None = None, *, hole: np.ndarray | None = None
) -> IntensityMap:
    """Compute the mapping of one plane from its valid pixels.

    Args:
        plane: ``H×W`` or ``H×W×C`` values (C channels share the mapping).
        valid: ``H×W`` bool, True where the pixel is known (not to be repaired).
        hole: Instead of ``valid``: ``H×W`` bool, True where the pixel is to be repaired
            (read on the sample grid only, so a large plane's mask is not inverted whole).

    Returns:
        The plane's :class:`IntensityMap`.

    Raises:
        ValueError: Neither or both of ``valid`` and ``hole`` given.
    """
    if (valid is None) == (hole is None):
        raise ValueError("intensity_map takes one of valid= and hole=")
    dtype = np.dtype(plane.dtype)
    check_dtype(dtype)
    if dtype == np.uint8:
        return IntensityMap(0.0, 255.0, dtype)
    h, w = plane.shape[:2]
    step = max(1, int(np.ceil(np.sqrt(h * w / _MAX_SAMPLES))))
    grid = (slice(None, None, step), slice(None, None, step))
    sample = plane[grid][valid[grid] if valid is not None else ~hole[grid]]
    if sample.size == 0:  # the valid pixels all fall between the grid points
        sample = plane[valid if valid is not None else ~hole]
    if dtype.kind in "ui" and dtype.itemsize == 8:
        lo = int(np.percentile(sample, PERCENTILES[0], method="lower"))
        hi = int(np.percentile(sample, PERCENTILES[1], method="higher"))
        return IntensityMap(lo, max(hi, lo), dtype)
    work = np.promote_types(dtype, np.float64) if dtype.kind == "f" else np.dtype("f8")
    sample = sample.astype(work)
    top = np.max(np.abs(sample)) if sample.size else 0
    exp = int(np.frexp(top)[1]) if top > 0 else 0
    # Percentiles of the values scaled into [-1, 1] (exact): their interpolation cannot
    # overflow on data near the float64 limits.
    lo, hi = np.ldexp(np.percentile(np.ldexp(sample, -exp), PERCENTILES), exp)
    cast = float if work == np.float64 else work.type
    return IntensityMap(cast(lo), cast(max(hi, lo)), dtype)
