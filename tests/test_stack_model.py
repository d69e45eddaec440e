"""The learned stack model (issue 17): alignment, neighbour use, fallback, identity, weights."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from rnon_engine import create_model, list_models, save_weights
from rnon_engine.errors import InputError, WeightsError
from rnon_engine.inference.inpainter import Inpainter
from rnon_engine.inference.stack_align import align_plane, warp_plane
from rnon_engine.inference.stack_context import NO_NEIGHBOUR_WARNING, prefill
from rnon_engine.inference.stack_inputs import align_neighbours, stack_inputs
from rnon_engine.inference.stack_model import StackModel, load_stack_model
from rnon_engine.nn.networks.stack import stack_channels

SIDE = 72


def _picture(seed: int = 0, side: int = SIDE) -> np.ndarray:
    """A smooth picture with structure at several scales, float32 in [0.1, 0.9]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side].astype(np.float64)
    im = np.zeros((side, side))
    for _ in range(8):
        fy, fx = rng.uniform(0.02, 0.25, 2)
        im += np.sin(fy * yy + fx * xx + rng.uniform(0, 6))
    im = (im - im.min()) / (im.max() - im.min())
    return (0.1 + 0.8 * im).astype(np.float32)


def _moving_stack(shifts: list[tuple[int, int]], seed: int = 0) -> np.ndarray:
    """Planes that are one larger picture seen through a window moved by ``shifts``."""
    big = _picture(seed, SIDE + 16)
    return np.stack([big[8 + dy : 8 + dy + SIDE, 8 + dx : 8 + dx + SIDE] for dy, dx in shifts])


def _hole() -> np.ndarray:
    hole = np.zeros((SIDE, SIDE), bool)
    hole[20:50, 15:45] = True
    hole[5:8, 50:70] = True
    return hole


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1 / np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.fixture(scope="module")
def stack_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised stack network (untrained: it returns its base fill)."""
    torch.manual_seed(0)
    net = create_model("rnon-repair-stack", width=8)
    return save_weights(net, tmp_path_factory.mktemp("w") / "stack.safetensors")


@pytest.fixture(scope="module")
def noisy_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random network whose residual head is not zero (its output is not its input)."""
    torch.manual_seed(1)
    net = create_model("rnon-repair-stack", width=8)
    with torch.no_grad():
        net.head.weight.normal_(0, 0.05)
    return save_weights(net, tmp_path_factory.mktemp("w") / "noisy.safetensors")


def _inpainter(weights: Path, method: str = "telea") -> Inpainter:
    inp = Inpainter.from_pretrained(method)
    inp.stack_weights = str(weights)
    return inp


def test_registered_and_untrained_network_returns_its_base_fill() -> None:
    assert "rnon-repair-stack" in list_models()
    net = create_model("rnon-repair-stack", slots=3, width=8).eval()
    x = torch.rand(2, stack_channels(3), 30, 41)
    with torch.no_grad():
        out = net(x)
    assert out.shape == (2, 1, 30, 41)
    assert torch.equal(out, x[:, 4 * 3 + 3 : 4 * 3 + 4])  # zero head: the base fill
    with pytest.raises(InputError, match=r"\[N, 17, H, W\]"):
        net(torch.rand(1, 13, 8, 8))


def test_partial_conv_ignores_values_under_the_masks(noisy_weights: Path) -> None:
    net = load_stack_model(noisy_weights).net
    s = net.config.slots
    x = torch.rand(1, stack_channels(s), 32, 32)
    x[:, 2 * s + 1 : 4 * s + 2] = (torch.rand(1, 2 * s + 1, 32, 32) > 0.4).float()
    y = x.clone()
    hidden = y[:, 2 * s + 1 : 4 * s + 2] == 0
    y[:, : 2 * s + 1][hidden] = 7.0  # values where the masks say "unknown"
    with torch.no_grad():
        assert torch.allclose(net(x), net(y), atol=1e-6)


@pytest.mark.parametrize("shift", [(3, -2), (0, 0), (-4, 5)])
def test_alignment_recovers_a_shift_on_known_pixels(shift: tuple[int, int]) -> None:
    st = _moving_stack([(0, 0), shift])
    hole = _hole()
    al = align_plane(st[0], ~hole, st[1], np.ones_like(hole))
    warped, valid = warp_plane(st[1], np.ones_like(hole), al.matrix)
    both = valid & ~hole
    assert both.mean() > 0.5
    assert np.sqrt(np.mean((warped[both] - st[0][both]) ** 2)) < 0.01
    assert np.sqrt(np.mean((warped[valid & hole] - st[0][valid & hole]) ** 2)) < 0.01
    if shift == (0, 0):
        assert al.kind == "identity"


def test_inputs_layout_and_has_mask() -> None:
    st = _moving_stack([(0, 0), (1, 1), (0, 0), (-1, 2), (2, 0)])
    hole = _hole()
    neigh = [(z - 2, st[z], np.ones((SIDE, SIDE), bool)) for z in (0, 1, 3, 4)]
    neigh[1] = (-1, st[1], ~hole)  # the plane just before lost the same pixels
    aligned, kinds = align_neighbours(st[2], ~hole, neigh)
    assert set(kinds) == {-2, -1, 1, 2}
    inputs = stack_inputs(st[2], hole, aligned, slots=2)
    assert inputs.x.shape == (stack_channels(2), SIDE, SIDE)
    assert np.array_equal(inputs.x[5], ~hole)  # the plane's known mask
    assert not inputs.x[0][hole].any()  # holes zeroed
    assert np.array_equal(inputs.base[~hole], st[2][~hole])
    assert inputs.has[hole].mean() > 0.95 and not inputs.has[~hole].any()
    # slot -1 lost the same pixels: once aligned (moved by 1 px), nothing of the hole is
    # valid there (the rim a 1-px move uncovers is left out too)
    assert inputs.x[6 + 1][hole].sum() == 0


def test_neighbours_holding_the_truth_beat_the_2d_method(stack_weights: Path) -> None:
    st = _moving_stack([(-2, 1), (3, 0), (0, 0), (1, -3), (-1, 2)])
    hole = _hole()
    mask = np.zeros(st.shape, bool)
    mask[2] = hole
    out = _inpainter(stack_weights).inpaint(st, mask, context_planes=2)
    flat = Inpainter.from_pretrained("telea").inpaint(st[2], hole)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        classical = Inpainter.from_pretrained("neighbours").inpaint(st, mask)
    p_stack, p_2d = _psnr(out[2][hole], st[2][hole]), _psnr(flat[hole], st[2][hole])
    p_classical = _psnr(classical[2][hole], st[2][hole])
    assert p_stack > p_2d + 15, (p_stack, p_2d)
    assert p_stack > p_classical + 10, (p_stack, p_classical)  # motion: aligned first
    assert np.array_equal(out[mask == 0], st[mask == 0])


def test_same_holes_in_every_plane_fall_back_to_the_2d_method(stack_weights: Path) -> None:
    st = _moving_stack([(0, 0)] * 5) * np.linspace(0.9, 1.1, 5)[:, None, None]  # drift
    st = st.astype(np.float32)
    hole = _hole()
    with pytest.warns(UserWarning, match=NO_NEIGHBOUR_WARNING) as rec:
        out = _inpainter(stack_weights).inpaint(st, hole, context_planes=2)
    assert sum(NO_NEIGHBOUR_WARNING in str(w.message) for w in rec) == 1  # said once
    flat = Inpainter.from_pretrained("telea").inpaint(st, hole, channel_axis=None)
    assert np.array_equal(out, flat)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_identity_outside_the_mask_and_dtype_kept(noisy_weights: Path, dtype) -> None:
    st = _moving_stack([(0, 0), (1, 0), (0, 0), (0, 2)])
    if np.dtype(dtype).kind == "u":
        st = np.round(st * np.iinfo(dtype).max).astype(dtype)
    else:
        st = (st * 300 - 50).astype(dtype)  # any float range
    mask = np.zeros(st.shape, np.uint8)
    mask[1][_hole()] = 1
    mask[3, 30:40, 30:40] = 1
    before = st.copy()
    out = _inpainter(noisy_weights).inpaint(st, mask, context_planes=1)
    assert out.dtype == st.dtype and out.shape == st.shape
    assert np.array_equal(st, before)  # input untouched
    assert np.array_equal(out[mask == 0], st[mask == 0])
    assert not np.array_equal(out[mask == 1], st[mask == 1])


def test_values_under_the_mask_do_not_matter(stack_weights: Path) -> None:
    st = _moving_stack([(0, 0), (2, 1), (0, 0), (-1, 0)])
    mask = np.zeros(st.shape, bool)
    mask[2] = _hole()
    mask[0, 30:40, 30:40] = True  # a neighbour's own hole
    inp = _inpainter(stack_weights)
    ref = inp.inpaint(st, mask, context_planes=1)
    bad = st.copy()
    bad[mask] = np.nan
    out = inp.inpaint(bad, mask, context_planes=1)
    assert np.isfinite(out).all()
    assert np.array_equal(out, ref)


def test_rgb_stack_and_stack_axis(stack_weights: Path, noisy_weights: Path) -> None:
    st = _moving_stack([(0, 0), (1, 1), (0, 0)])
    rgb = np.stack([st, 0.8 * st, 1 - st], -1)  # Z, Y, X, C
    mask = np.zeros(st.shape, bool)
    mask[1] = _hole()
    out = _inpainter(stack_weights).inpaint(rgb, mask, context_planes=1, channel_axis=-1)
    assert np.array_equal(out[~mask], rgb[~mask])
    assert _psnr(out[1][_hole()], rgb[1][_hole()]) > 25
    two = np.stack([st, st[::-1]])  # T, Z, Y, X: the stack along axis 1
    mask2 = np.stack([mask, mask[::-1]])
    out2 = _inpainter(noisy_weights).inpaint(
        two, mask2, context_planes=1, stack_axis=1, channel_axis=None
    )
    for t in range(2):
        ref = _inpainter(noisy_weights).inpaint(two[t], mask2[t], context_planes=1)
        assert np.array_equal(out2[t], ref)


def test_bad_input_is_refused(stack_weights: Path) -> None:
    st = _moving_stack([(0, 0), (1, 0), (0, 0)])
    inp = _inpainter(stack_weights)
    with pytest.raises(InputError, match="at most 2"):
        inp.inpaint(st, _hole(), context_planes=3)
    with pytest.raises(InputError, match="needs a stack"):
        inp.inpaint(st[0], _hole(), context_planes=1)
    rgb = np.stack([st, st, st], -1)
    with pytest.raises(InputError, match="channel axis"):
        inp.inpaint(rgb, _hole(), context_planes=1, channel_axis=-1, stack_axis=-1)


def test_weights_round_trip_and_foreign_weights(tmp_path: Path, noisy_weights: Path) -> None:
    model = load_stack_model(noisy_weights)
    x = torch.rand(1, stack_channels(model.slots), 24, 24)
    path = save_weights(model.net, tmp_path / "half.safetensors", dtype=torch.float16)
    again = load_stack_model(path)
    assert again.net.config == model.net.config and again.sha256 != model.sha256
    half = {k: v.half().float() for k, v in model.net.state_dict().items()}
    ref = create_model("rnon-repair-stack", **vars(model.net.config)).eval()
    ref.load_state_dict(half)
    with torch.no_grad():
        assert torch.allclose(again.net(x), ref(x))
    repair = save_weights(create_model("rnon-repair", width=0.125, depth=4), tmp_path / "r.st")
    with pytest.raises(WeightsError, match="not stack weights"):
        load_stack_model(repair)
    with pytest.raises(WeightsError, match="not found"):
        load_stack_model(tmp_path / "missing.safetensors")
    assert isinstance(model, StackModel)


def test_prefill_filler_is_used_for_the_planes_asked(noisy_weights: Path) -> None:
    st = _moving_stack([(0, 0), (1, 0), (0, 0), (0, 1), (1, 1)])
    mask = np.zeros(st.shape, bool)
    mask[1][_hole()] = True
    mask[3, 10:20, 10:20] = True
    fill = load_stack_model(noisy_weights).fill_plane
    whole = prefill(st, mask, 2, filler=fill)
    part = prefill(st[0:4], mask[0:4], 2, filler=fill, planes=[1])
    assert np.array_equal(whole.image[1], part.image[1])  # plane 1 needs planes 0..3 only
    assert not whole.residual[1].any()


def test_packaged_stack_model() -> None:
    from rnon_engine.inference.provenance import describe
    from rnon_engine.inference.stack_model import packaged_stack_path
    from rnon_engine.inference.weights_source import list_methods
    from rnon_engine.nn.weights import file_sha256, read_metadata

    path = packaged_stack_path()
    assert path.stat().st_size < 5 * 2**20
    meta = read_metadata(path)
    assert meta["model_name"] == "rnon-repair-stack" and meta["step"] > 0
    inp = Inpainter.from_pretrained("stack", "cpu")
    assert inp.context_planes == 2 and inp.stack_weights == "default"
    assert inp.provenance["stack_weights_sha256"] == file_sha256(path)
    assert describe("stack") == inp.provenance
    assert {"neighbours", "stack"} <= set(list_methods())
    auto = Inpainter.from_pretrained("auto", "cpu")
    assert auto.stack_weights == "default"
    assert describe("auto") == auto.provenance


def _uint16_stack(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    big = _picture(3, 80)
    planes = [big[z % 3 : z % 3 + 48, z // 2 : z // 2 + 64] * (1 + 0.02 * z) for z in range(n)]
    img = np.round(np.stack(planes) * 50000).astype(np.uint16)
    m = np.zeros((n, 48, 64), np.uint8)
    for z in range(n):  # transient defects, different in each plane
        m[z, 5 + 6 * z : 12 + 6 * z, 10 + 5 * z : 22 + 5 * z] = 1
    m[:, 40:44, 2:6] = 1  # the same pixels in every plane: 2-D fallback
    m[2] = 1  # a lost plane, filled from its neighbours
    return img, m


@pytest.mark.parametrize("chunk", [1, 4])
def test_batch_model_stack_blocks_match_one_call(
    tmp_path: Path, chunk: int, noisy_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zarr

    import rnon_engine.inference.stack_model as stack_model
    from rnon_engine.batch.cli import main

    monkeypatch.setattr(stack_model, "packaged_stack_path", lambda: noisy_weights)
    img, m = _uint16_stack()
    for name, data in (("in", img), ("m", m)):
        z = zarr.create_array(
            store=str(tmp_path / f"{name}.zarr"), shape=data.shape, chunks=(chunk, 48, 64),
            dtype=data.dtype,
        )
        z[...] = data
    out = tmp_path / "out.zarr"
    args = [str(tmp_path / "in.zarr"), "--mask", str(tmp_path / "m.zarr"), "-o", str(out)]
    assert main([*args, "--model", "stack", "--device", "cpu", "--no-progress"]) == 0
    res = zarr.open_array(str(out))[...]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = Inpainter.from_pretrained("stack", "cpu").inpaint(img, m, channel_axis=None)
    assert res.dtype == img.dtype
    assert np.array_equal(res[m == 0], img[m == 0])
    assert np.array_equal(res, ref)  # the same at block borders as one whole-stack call
    attrs = dict(zarr.open_array(str(out)).attrs)["rnon_batch"]
    assert attrs["context_planes"] == 2
    assert attrs["stack_fill"] == "rnon-repair-stack"
