"""The box graph: stage 1's finest decoder levels computed in the holes' box only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnon_engine.export.graphs import OptimizeGraph, RepairGraph, box_levels
from rnon_engine.nn.registry import create_model


def _net(seed: int, **config) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = create_model("rnon-repair", **config).eval()
    with torch.no_grad():  # trained-looking BN statistics and a head that acts
        for mod in net.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
        net.head.weight.normal_(0, 0.5)
    return net


@pytest.mark.parametrize(
    "config",
    [
        {"width": 0.125, "depth": 4, "prefill": "pushpull"},
        {"width": 0.125, "depth": 2, "prefill": "pushpull"},  # fewer levels than BOX_LEVELS
        {"width": 0.0625, "depth": 8, "prefill": "pushpull"},  # the default's shape
        {"width": 0.125, "depth": 4, "prefill": "none"},
        {"width": 0.0625, "depth": 8, "prefill": "pushpull", "head_channels": 16},
    ],
)
def test_the_box_holds_the_values_of_the_whole_window(config) -> None:
    net = _net(0, **config)
    # In float64: eager torch may pick another convolution algorithm for another size,
    # whose float32 rounding, carried through four levels, would hide a wrong row.
    graph = RepairGraph(net.double(), levels=8).eval()
    rng = np.random.default_rng(1)
    # 72 x 56 and 88 x 40 padded to 8: the level above the box levels has odd sides (not an
    # exact x2 of the coarsest box level), 37 x 91 padded to 40 x 96 too.
    cases = [
        (3, 64, 64, 8), (2, 72, 56, 8), (2, 88, 40, 8), (2, 37, 91, 8), (1, 130, 70, 256),
        (2, 8, 8, 8),
    ]
    with torch.no_grad():
        for n, h, w, pad in cases:
            x = torch.from_numpy(rng.random((n, 3, h, w)))
            for corner in (False, True):
                y0, x0 = (0, 0) if corner else (int(rng.integers(0, h)), int(rng.integers(0, w)))
                y1 = min(h, y0 + 1 + int(rng.integers(0, 20)))
                x1 = min(w, x0 + 1 + int(rng.integers(0, 20)))
                mask = torch.zeros(n, 1, h, w, dtype=torch.float64)
                mask[0, :, y0:y1, x0:x1] = 1
                mask[-1, :, y1 - 1, x1 - 1] = 1
                whole = graph(x, mask, torch.zeros(pad))
                box = torch.tensor([y0, y1, x0, x1])
                got = graph(x, mask, torch.zeros(pad), box)
                assert got.shape == (n, 3, y1 - y0, x1 - x0)
                torch.testing.assert_close(got, whole[..., y0:y1, x0:x1], atol=1e-12, rtol=0)
                # Outside the holes the box is the input (composited).
                keep = mask[..., y0:y1, x0:x1] == 0
                inside = x[..., y0:y1, x0:x1]
                assert torch.equal(got[keep.expand_as(got)], inside[keep.expand_as(inside)])


def test_the_box_is_what_the_levels_read() -> None:
    """Each level reads one row around what it must write, and halves into the next."""
    levels = box_levels(torch.tensor(10), torch.tensor(20), 3)
    as_ints = [tuple(int(v) for v in level) for level in levels]
    assert as_ints == [(10, 20, 9, 21), (4, 11, 3, 12), (1, 6, 0, 7), (0, 4)]
    # At the top edge nothing is read above row 0.
    assert [int(v) for v in box_levels(torch.tensor(0), torch.tensor(3), 1)[0]] == [0, 3, 0, 4]



@pytest.mark.parametrize(
    "config",
    [
        {"width": 0.5, "blocks": 1, "head_kernel": 3, "guide": "biharmonic"},  # the default's
        {"width": 0.25, "blocks": 2, "fuse_kernel": 3, "head_kernel": 9, "guide": "biharmonic"},
        {"width": 0.25, "blocks": 0, "head_kernel": 5, "guide": "biharmonic"},
        {"width": 0.25, "blocks": 1, "dilations": (1, 3), "guide": "none"},
    ],
)
def test_stage2_in_the_box_is_stage2_on_the_whole_input(config) -> None:
    torch.manual_seed(4)
    net = create_model("rnon-optimize", **config).eval()
    with torch.no_grad():  # the tail starts at zero: make it act
        net.tail.weight.normal_(0, 0.3)
    graph = OptimizeGraph(net).eval()
    rng = np.random.default_rng(5)
    with torch.no_grad():
        for n, h, w in [(2, 44, 44), (1, 30, 61), (3, 9, 12)]:
            image = torch.from_numpy(rng.random((n, 3, h, w), dtype=np.float32))
            guide = torch.from_numpy(rng.random((n, 3, h, w), dtype=np.float32))
            valid = torch.from_numpy(rng.random((n, 1, h, w)) > 0.2).float()
            args = (image, guide, valid) if net.config.guided else (image, None, None)
            whole = graph(*args)
            boxes = [(h // 3, 2 * h // 3, w // 4, w // 2), (0, 3, 0, w), (h - 1, h, w - 2, w)]
            for y0, y1, x0, x1 in [*boxes, (0, h, 0, w)]:
                got = graph(*args, box=torch.tensor([y0, y1, x0, x1]))
                assert got.shape == (n, 3, y1 - y0, x1 - x0)
                torch.testing.assert_close(got, whole[..., y0:y1, x0:x1], atol=1e-5, rtol=0)


def _guided_export(tmp_path, seed: int) -> tuple[torch.nn.Module, dict]:
    """A push-pull stage 1 and a guided stage 2 (both acting), exported: (stage 2, paths)."""
    from rnon_engine.export.onnx_export import export_graphs

    rep = _net(seed, width=0.125, depth=4, prefill="pushpull")
    torch.manual_seed(seed + 1)
    opt = create_model("rnon-optimize", width=0.25, blocks=1, guide="biharmonic").eval()
    with torch.no_grad():
        opt.tail.weight.normal_(0, 0.3)
    return opt, export_graphs(rep, opt, tmp_path / "export")


def test_onnx_runtime_runs_stage2_in_the_holes_box(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from rnon_engine.inference.onnx_model import OnnxNetworks

    opt, paths = _guided_export(tmp_path, 6)
    nets = OnnxNetworks(paths["repair"], paths["optimize"], threads=1)
    rng = np.random.default_rng(8)
    image = rng.random((2, 3, 40, 48), dtype=np.float32)
    guide = rng.random((2, 3, 40, 48), dtype=np.float32)
    valid = np.ones((2, 1, 40, 48), np.float32)
    valid[0, :, 12:20, 30:47] = 0
    valid[1, :, 25, 3] = 0
    got = nets.optimize(image, guide, valid)
    with torch.no_grad():
        want = opt(*(torch.from_numpy(a) for a in (image, guide, valid))).numpy()
    inside = (slice(None), slice(None), slice(12, 26), slice(3, 47))  # the holes' box
    np.testing.assert_allclose(got[inside], want[inside], atol=1e-5, rtol=0)
    outside = np.ones(got.shape, bool)
    outside[inside] = False
    assert np.array_equal(got[outside], image[outside])  # the input where nothing changes
    # Holes all over: the whole graph, refined everywhere.
    valid[:, :, ::3, ::3] = 0
    got = nets.optimize(image, guide, valid)
    with torch.no_grad():
        want = opt(*(torch.from_numpy(a) for a in (image, guide, valid))).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_an_export_without_the_box_graphs_runs_whole_with_the_same_values(tmp_path) -> None:
    """An export of an earlier version (or a partial copy) has no box graphs: optional."""
    pytest.importorskip("onnxruntime")
    from rnon_engine.inference.onnx_model import BOX_SHARE, OnnxNetworks

    _, paths = _guided_export(tmp_path, 9)
    new = OnnxNetworks(paths["repair"], paths["optimize"], threads=1)
    assert {"repair_box", "optimize_box"} <= set(new.paths)
    rng = np.random.default_rng(3)
    x = rng.random((2, 3, 32, 40), dtype=np.float32)
    holes = np.zeros((2, 32, 40), bool)
    holes[0, 10:14, 5:20] = holes[1, 20, 30] = True  # a box of 11 × 26 px: under BOX_SHARE
    assert 11 * 26 <= BOX_SHARE * 32 * 40
    valid = (~holes[:, None]).astype(np.float32)
    used: list[str] = []
    session = new.session
    new.session = lambda role: used.append(role) or session(role)
    want_repair, want_opt = new.repair(x, holes, 8), new.optimize(x, x[:, ::-1], valid)
    assert used == ["repair_box", "optimize_box"]  # the box graphs did it
    paths["repair_box"].unlink()
    paths["optimize_box"].unlink()
    old = OnnxNetworks(paths["repair"], paths["optimize"], threads=1)
    assert not {"repair_box", "optimize_box"} & set(old.paths)
    np.testing.assert_array_equal(old.repair(x, holes, 8), want_repair)
    got = old.optimize(x, x[:, ::-1], valid)
    np.testing.assert_allclose(got[..., 10:21, 5:31], want_opt[..., 10:21, 5:31], atol=1e-5, rtol=0)
    # Holes that fill the windows go through the whole graphs, box graphs or not.
    wide = np.zeros((2, 32, 40), bool)
    wide[:, 2:30, 3:38] = True
    used.clear()
    np.testing.assert_array_equal(new.repair(x, wide, 8), old.repair(x, wide, 8))
    assert used == ["repair_small"]
