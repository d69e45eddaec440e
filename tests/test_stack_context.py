"""The ``neighbours`` stack fill and ``Inpainter.inpaint(context_planes=K)`` (issue 17)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from rnon_engine import Inpainter
from rnon_engine.errors import InputError
from rnon_engine.inference.stack_context import (
    NO_NEIGHBOUR_WARNING,
    harmonic_offset,
    predict_plane,
    prefill,
)


def _stack(n: int = 5, size: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.repeat(rng.random((1, size, size)), n, axis=0).astype(np.float32)


def _hole(shape: tuple[int, ...], z: int) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[z, 15:30, 10:25] = True
    return m


def test_equal_planes_give_the_nearest_known_values_exactly() -> None:
    st = _stack()
    m = _hole(st.shape, 2)
    m[1, 15:30, 10:25] = True  # the nearest plane on one side is damaged too
    out = Inpainter.from_pretrained("neighbours").inpaint(st, m)
    assert np.array_equal(out, st)


def test_distance_weighting_is_linear_interpolation() -> None:
    # Plane 2's hole: nearest known before is plane 1 (d=1, value 1), after is plane 4
    # (d=2, value 4): weights 1 and 1/2 give (1 + 4/2) / 1.5 = 2, the linear interpolation.
    # Plane 0 is farther on the same side than plane 1 and is not used.
    st = np.zeros((5, 8, 8), np.float32)
    for z in range(5):
        st[z] = z
    m = np.zeros(st.shape, bool)
    m[2, 2:6, 2:6] = m[3, 2:6, 2:6] = True
    res = prefill(st, m, 2)
    assert not res.residual.any()
    assert np.allclose(res.image[2, 2:6, 2:6], 2.0)
    assert np.allclose(res.image[3, 2:6, 2:6], 3.0)
    ones = np.ones((2, 2), bool)
    pred, has = predict_plane(
        [(-1, np.full((2, 2, 1), 1.0), ones), (3, np.full((2, 2, 1), 7.0), ones)]
    )
    assert has.all() and np.allclose(pred, (1.0 + 7.0 / 3) / (1 + 1 / 3))
    # One side only: the nearest known plane's value, not a mean with farther ones.
    near = np.array([[True, False], [True, True]])
    pred, has = predict_plane(
        [(1, np.full((2, 2, 1), 5.0), near), (2, np.full((2, 2, 1), 9.0), ones)]
    )
    assert np.array_equal(pred[..., 0], [[5.0, 9.0], [5.0, 5.0]])


def test_seam_correction_removes_an_intensity_offset() -> None:
    # The damaged plane is 0.3 brighter than its neighbours (flicker): the plain prediction
    # is 0.3 too dark, the harmonic correction brings the fill to the plane's own level.
    st = _stack(3)
    st[1] += 0.3
    m = _hole(st.shape, 1)
    raw = prefill(st, m, 1, seam=False)
    fixed = prefill(st, m, 1)
    err_raw = np.abs(raw.image[m] - st[m]).max()
    err_fixed = np.abs(fixed.image[m] - st[m]).max()
    assert err_raw == pytest.approx(0.3, abs=1e-5)
    assert err_fixed < 1e-5


def test_harmonic_offset_is_linear_between_two_border_values() -> None:
    region = np.zeros((1, 5), bool)
    region[0, 1:4] = True
    border = ~region
    value = np.zeros((1, 5, 1))
    value[0, 0, 0], value[0, 4, 0] = 0.0, 4.0
    off = harmonic_offset(region, value, border)
    assert np.allclose(off[0, 1:4, 0], [1.0, 2.0, 3.0])


def test_no_neighbour_falls_back_to_2d_and_warns_once() -> None:
    st = _stack()
    m = np.zeros(st.shape[1:], bool)
    m[15:30, 10:25] = True  # the same pixels in every plane: no information
    inp = Inpainter.from_pretrained("neighbours")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = inp.inpaint(st, m)
    ours = [w for w in caught if NO_NEIGHBOUR_WARNING in str(w.message)]
    assert len(ours) == 1
    ref = Inpainter.from_pretrained("biharmonic").inpaint(st, m, channel_axis=None)
    assert np.array_equal(out, ref)


def test_mixed_fill_uses_neighbours_where_known_and_2d_elsewhere() -> None:
    st = _stack(3)
    m = np.zeros(st.shape, bool)
    m[:, 5:10, 5:10] = True  # every plane: 2-D fallback
    m[1, 30:40, 30:40] = True  # only the middle plane: neighbours
    with pytest.warns(UserWarning, match=NO_NEIGHBOUR_WARNING):
        out = Inpainter.from_pretrained("telea").inpaint(st, m, context_planes=1)
    assert np.array_equal(out[1, 30:40, 30:40], st[1, 30:40, 30:40])
    assert not np.array_equal(out[:, 5:10, 5:10], st[:, 5:10, 5:10])


def test_stack_axis_and_channels() -> None:
    # T×Z×Y×X×C, neighbours along Z (axis 1); the two T points differ and must not mix.
    rng = np.random.default_rng(1)
    frames = rng.random((2, 1, 32, 32, 3)).astype(np.float32)
    st = np.repeat(frames, 4, axis=1)
    m = np.zeros(st.shape[:-1], bool)
    m[0, 1, 5:15, 5:15] = m[1, 2, 8:20, 3:9] = True
    out = Inpainter.from_pretrained("neighbours").inpaint(
        st, m, channel_axis=-1, stack_axis=1, context_planes=1
    )
    assert np.array_equal(out, st)
    with pytest.raises(InputError, match="spatial"):
        Inpainter.from_pretrained("neighbours").inpaint(st, m, channel_axis=-1, stack_axis=2)


@pytest.mark.parametrize(
    ("kwargs", "shape", "match"),
    [
        ({"context_planes": 5}, (5, 16, 16), "at most 4"),
        ({"context_planes": 1}, (16, 16), "needs a stack"),
        ({"context_planes": 1, "stack_axis": 3, "channel_axis": 3}, (4, 16, 16, 3), "channel"),
        ({"context_planes": 1, "stack_axis": 1}, (4, 16, 16), "spatial"),
        ({"context_planes": 1, "stack_axis": 7}, (4, 16, 16), "out of range"),
        ({"context_planes": -1}, (4, 16, 16), ">= 0|>= 1"),
        ({"context_planes": 1.5}, (4, 16, 16), "integer"),
        ({"context_planes": 1, "stages": "optimize"}, (4, 16, 16), "optimize"),
    ],
)
def test_bad_input_is_refused(kwargs: dict, shape: tuple[int, ...], match: str) -> None:
    image = np.zeros(shape, np.float32)
    mask = np.zeros(shape[:3] if len(shape) == 4 else shape, bool)
    mask[..., 2:4, 2:4] = True
    before = image.copy()
    with pytest.raises(InputError, match=match):
        Inpainter.from_pretrained("telea").inpaint(image, mask, **kwargs)
    assert np.array_equal(image, before)


def test_bad_mask_and_lost_plane_without_neighbours() -> None:
    st = _stack(3)
    with pytest.raises(InputError, match="does not match"):
        prefill(st, np.zeros((3, 5, 5), bool), 1)
    st5 = _stack(5)
    m = np.zeros(st5.shape, bool)
    m[1:4] = True  # plane 2 and both planes within K=1 lost
    with pytest.raises(InputError, match="masked entirely"):
        Inpainter.from_pretrained("neighbours").inpaint(st5, m, context_planes=1)
    out = Inpainter.from_pretrained("neighbours").inpaint(st5, m, context_planes=2)
    assert np.array_equal(out, st5)
    # A whole lost plane with a known neighbour is filled from it.
    m = np.zeros(st.shape, bool)
    m[1] = True
    out = Inpainter.from_pretrained("neighbours").inpaint(st, m)
    assert np.array_equal(out, st)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_identity_outside_mask_and_dtype(dtype: type) -> None:
    rng = np.random.default_rng(2)
    info = np.iinfo(dtype) if np.dtype(dtype).kind == "u" else None
    top = float(info.max) if info else 1.0
    st = (rng.random((4, 40, 40)) * top).astype(dtype)
    st[2] = np.clip(st[2].astype(np.float64) + 0.2 * top, 0, top).astype(dtype)  # drift
    m = np.zeros(st.shape, bool)
    m[1, 10:20, 10:20] = m[2, 12:30, 5:15] = True
    m[:, 35:38, 35:38] = True  # no neighbour: 2-D
    before = st.copy()
    with pytest.warns(UserWarning, match=NO_NEIGHBOUR_WARNING):
        out = Inpainter.from_pretrained("neighbours").inpaint(st, m)
    assert out.dtype == st.dtype
    assert np.array_equal(out[~m], st[~m])
    assert np.array_equal(st, before)
    if info:
        assert out.min() >= 0 and out.max() <= info.max


@pytest.mark.parametrize("name", ["auto", "default"])
def test_networks_and_auto_use_the_neighbour_fill(name: str) -> None:
    st = (_stack(3, 64) * 255).astype(np.uint8)
    m = np.zeros(st.shape, bool)
    m[1, 20:40, 20:40] = True  # neighbours know it
    m[:, 5:9, 50:54] = True  # nobody does: the 2-D method
    with pytest.warns(UserWarning, match=NO_NEIGHBOUR_WARNING):
        out = Inpainter.from_pretrained(name, device="cpu").inpaint(st, m, context_planes=1)
    got, truth = out[1, 20:40, 20:40].astype(int), st[1, 20:40, 20:40].astype(int)
    if name == "default":  # the classical neighbours fill: exact on equal planes
        assert np.array_equal(got, truth)
    else:  # auto: the packaged stack model (test_stack_model.py), close to the truth
        assert np.abs(got - truth).mean() < 3
    assert np.array_equal(out[~m], st[~m])
