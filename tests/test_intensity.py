"""The intensity map keeps range and resolution at any magnitude (issue 21: no silent NaN)."""

import numpy as np
import pytest
import torch

from rnon_engine import InputError, create_model
from rnon_engine.inference.inpainter import Inpainter
from rnon_engine.inference.intensity import IntensityMap, intensity_map

torch.manual_seed(0)
_REPAIR = create_model("rnon-repair", width=0.125, depth=5)
_OPT = create_model("rnon-optimize", width=0.125, blocks=2)
_NET = Inpainter(_REPAIR, _OPT, device="cpu", tile_size=64)
_TELEA = Inpainter.from_pretrained("telea", tile_size=64)


def _base(seed=0):
    y, x = np.mgrid[0:40, 0:40] / 40.0
    noise = np.random.default_rng(seed).random((40, 40))
    return 0.5 + 0.3 * np.sin(3 * x + 1) * np.cos(2 * y) + 0.05 * noise


def _mask():
    m = np.zeros((40, 40), bool)
    m[12:22, 14:24] = True
    return m


@pytest.mark.parametrize("inp", [_NET, _TELEA], ids=["net", "telea"])
@pytest.mark.parametrize("exp", [990, 1020, -150, -1000])
def test_power_of_two_scaled_floats_give_the_scaled_fill(inp, exp):
    """Scaling float64 data by 2**exp (exact) scales the fill by 2**exp, bit for bit.

    2**1020 ~ 1e307 used to overflow float32 (NaN holes); 2**-150 ~ 1e-45 to underflow it.
    """
    img, mask = _base(), _mask()
    ref = inp.inpaint(img, mask)
    out = inp.inpaint(np.ldexp(img, exp), mask)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out, np.ldexp(ref, exp))


@pytest.mark.parametrize("inp", [_NET, _TELEA], ids=["net", "telea"])
def test_data_spanning_the_whole_float64_range(inp):
    img, mask = (2 * _base() - 1.0) * 1.7e308, _mask()
    out = inp.inpaint(img, mask)
    known = img[~mask]
    assert np.isfinite(out).all()
    assert known.min() <= out[mask].min() and out[mask].max() <= known.max()
    assert np.unique(out[mask]).size > 20


@pytest.mark.parametrize("inp", [_NET, _TELEA], ids=["net", "telea"])
def test_tiny_range_on_a_large_offset_keeps_its_resolution(inp):
    """1e6 + 1e-6 * x: float32 holds one value there; the fill must follow x, not be flat."""
    base, mask = _base(), _mask()
    ref = inp.inpaint(base, mask)
    out = inp.inpaint(1e6 + 1e-6 * base, mask)
    fill = (out[mask] - 1e6) * 1e6
    assert np.unique(out[mask]).size > 20
    np.testing.assert_allclose(fill, ref[mask], atol=2e-3)


@pytest.mark.parametrize("dtype", [np.uint64, np.int64])
@pytest.mark.parametrize("inp", [_NET, _TELEA], ids=["net", "telea"])
def test_64_bit_integers_at_their_limits(inp, dtype):
    """uint64 near its maximum (and int64 near its minimum) used to come back wrapped to 0."""
    counts = np.rint(_base() * 1000).astype(np.int64)  # 0..~1000
    mask = _mask()
    info = np.iinfo(dtype)
    offset = int(info.max) - 1200 if dtype == np.uint64 else int(info.min) + 5
    img = (counts.astype(object) + offset).astype(dtype)
    out = inp.inpaint(img, mask)
    assert out.dtype == dtype
    assert np.array_equal(out[~mask], img[~mask])
    known = img[~mask]
    assert known.min() <= out[mask].min() and out[mask].max() <= known.max()
    got = (out[mask].astype(object) - offset).astype(np.int64)
    # The same fill as for the counts themselves: the map works on exact offsets from lo.
    np.testing.assert_array_equal(got, inp.inpaint(counts, mask)[mask])


def test_int64_spanning_its_whole_range_maps_exactly():
    info = np.iinfo(np.int64)
    plane = np.array([[info.min, -1, 0, info.max]], np.int64)
    imap = intensity_map(plane, np.ones(plane.shape, bool))
    assert (imap.lo, imap.hi) == (int(info.min), int(info.max))
    unit = imap.to_unit(plane)
    assert unit[0, 0] == 0.0 and unit[0, -1] == 1.0
    back = imap.from_unit(np.array([0.0, 1.0, 0.5]))
    assert back[0] == info.min and back[1] == info.max and abs(int(back[2])) < 2**12


def test_big_endian_uint64_round_trip():
    plane = (np.arange(12, dtype=np.uint64) + np.uint64(2**64 - 100)).astype(">u8").reshape(3, 4)
    imap = intensity_map(plane, np.ones(plane.shape, bool))
    back = imap.from_unit(imap.to_unit(plane).astype(np.float64))
    assert back.dtype == np.dtype(">u8")
    assert np.abs(back.astype(object) - plane.astype(object)).max() <= 1


def test_constant_plane_fills_with_its_value():
    imap = IntensityMap(7.5, 7.5, np.dtype(np.float64))
    assert not imap.to_unit(np.array([1.0, 7.5, 1e308])).any()
    assert (imap.from_unit(np.array([0.0, 0.3, 1.0])) == 7.5).all()


def test_uint8_and_uint16_maps_follow_the_documented_formula():
    """v/255 and the 0.1-99.9 percentile map, computed in float64 and rounded once to float32."""
    u8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    m8 = intensity_map(u8, np.ones(u8.shape, bool))
    np.testing.assert_array_equal(m8.to_unit(u8), (u8 / 255.0).astype(np.float32))
    u16 = np.random.default_rng(0).integers(100, 4000, (64, 64)).astype(np.uint16)
    m16 = intensity_map(u16, np.ones(u16.shape, bool))
    lo, hi = np.percentile(u16.astype(np.float64), (0.1, 99.9))
    assert (m16.lo, m16.hi) == (lo, hi)
    want = np.clip((u16 - lo) / (hi - lo), 0, 1).astype(np.float32)
    np.testing.assert_array_equal(m16.to_unit(u16), want)


def test_optimize_alone_refuses_non_finite_holes():
    img, mask = _base(), _mask()
    img[15, 16] = np.nan
    with pytest.raises(InputError, match="stages='repair'"):
        _NET.inpaint(img, mask, stages="optimize")
    out = _NET.inpaint(img, mask)  # "both" repairs them
    assert np.isfinite(out).all()


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16])
def test_8_and_16_bit_values_map_by_table_to_the_formula(dtype):
    # Every value of the type, through to_unit (a lookup table for these types), against
    # clip((v - lo) / (hi - lo), 0, 1) in float64, for a plane's own map and a constant one.
    info = np.iinfo(dtype)
    every = np.arange(info.min, int(info.max) + 1, dtype=dtype)
    rng = np.random.default_rng(0)
    plane = rng.integers(info.min // 2, info.max // 2, (64, 64)).astype(dtype)
    constant = IntensityMap(3, 3, np.dtype(dtype))
    for imap in (intensity_map(plane, np.ones((64, 64), bool)), constant):
        got = imap.to_unit(every.reshape(-1, 2) if every.size % 2 == 0 else every)
        span = float(imap.hi) - float(imap.lo)
        want = (
            np.clip((every.astype(np.float64) - float(imap.lo)) / span, 0.0, 1.0)
            if span > 0
            else np.zeros(every.shape)
        ).astype(np.float32)
        assert got.dtype == np.float32 and np.array_equal(got.ravel(), want)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.int64])
def test_map_from_the_hole_mask_is_the_map_from_the_valid_pixels(dtype):
    # The inpainter passes the hole mask, read on the sample grid only: the same map as
    # from the valid pixels, including a plane too large to be read whole.
    rng = np.random.default_rng(3)
    plane = (rng.random((1500, 1300, 3)) * 3000).astype(dtype)
    hole = rng.random((1500, 1300)) < 0.3
    plane[hole] = 60000 if dtype == np.uint16 else -1e6  # out of range: must be left out
    got = intensity_map(plane, hole=hole)
    want = intensity_map(plane, ~hole)
    assert (got.lo, got.hi) == (want.lo, want.hi)
    assert want.hi < 3000
    # Valid pixels only between the sample grid's points: found all the same.
    sparse = np.ones((1500, 1300), bool)
    sparse[1::2, 1::2] = False
    assert intensity_map(plane, hole=sparse).lo == intensity_map(plane, ~sparse).lo
    with pytest.raises(ValueError, match="one of valid= and hole="):
        intensity_map(plane)
    with pytest.raises(ValueError, match="one of valid= and hole="):
        intensity_map(plane, ~hole, hole=hole)
