"""A guided stage 2 (``OptimizeConfig.guide="biharmonic"``): the learned blend of the
stage-1 fill and a classical fill, through the network, the trainer, the inpainter, the
ONNX Runtime backend and the exported files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnon_engine import ConfigError, InputError, create_model, load_model, save_weights
from rnon_engine.inference.classical import fill as classical_fill
from rnon_engine.inference.classical import guide_fill
from rnon_engine.inference.inpainter import Inpainter
from rnon_engine.inference.onnx_model import TOLERANCE
from rnon_engine.inference.ort_runner import ort_available
from rnon_engine.inference.sparse_biharmonic import fill_biharmonic


def _models(seed: int = 0, act: bool = True):
    torch.manual_seed(seed)
    rep = create_model("rnon-repair", width=0.125, depth=5)
    opt = create_model("rnon-optimize", width=0.25, blocks=2, guide="biharmonic", head_kernel=3)
    if act:
        with torch.no_grad():  # the tail starts at the fixed blend: make the network act
            for p in opt.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return rep.eval(), opt.eval()


def _case():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:90, :130]
    image = np.stack([np.sin(yy / 7.0), np.cos(xx / 9.0), np.sin((yy + xx) / 11.0)], -1)
    image = (0.5 + 0.4 * image + rng.normal(0, 0.02, image.shape)).astype(np.float32)
    mask = np.zeros((90, 130), bool)
    mask[20:26, 5:120] = True  # a stroke (blended windows)
    mask |= (yy - 60) ** 2 + (xx - 30) ** 2 <= 16  # a spot (packed window)
    mask[70, 100] = True  # a dead pixel
    return image, mask


def test_untrained_guided_network_is_the_fixed_blend() -> None:
    _, opt = _models(act=False)
    g = torch.Generator().manual_seed(0)
    x, guide = torch.rand(2, 3, 20, 24, generator=g), torch.rand(2, 3, 20, 24, generator=g)
    valid = (torch.rand(2, 1, 20, 24, generator=g) > 0.3).float()
    with torch.no_grad():
        out = opt(x, guide, valid)
    assert torch.allclose(out, 0.7 * x + 0.3 * guide, atol=1e-6)
    assert opt.config.halo == 1 + 2 * 8 + 1


def test_guided_network_needs_its_inputs_and_refuses_bad_options() -> None:
    _, opt = _models()
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(InputError, match="guided by a biharmonic fill"):
        opt(x)
    with pytest.raises(InputError, match="guide must be"):
        opt(x, torch.rand(1, 3, 8, 8), torch.ones(1, 1, 16, 16))
    with pytest.raises(ConfigError, match="guide must be one of"):
        create_model("rnon-optimize", guide="telea-ish")
    with pytest.raises(ConfigError, match="head_kernel"):
        create_model("rnon-optimize", head_kernel=4)


def test_guide_fill_is_the_biharmonic_fill_per_window() -> None:
    image, mask = _case()
    batch = np.stack([image, image[::-1].copy()]).transpose(0, 3, 1, 2)
    holes = np.stack([mask, np.zeros_like(mask)])
    out = guide_fill("biharmonic", batch, holes)
    # One sparse solve per window: auto's biharmonic fill, clipped to the known range...
    ref = fill_biharmonic(image, mask)
    np.testing.assert_allclose(out[0].transpose(1, 2, 0), ref, atol=1e-5)
    assert np.array_equal(out[0].transpose(1, 2, 0)[~mask], image[~mask])
    # ...which is scikit-image's biharmonic fill for a hole away from others and the edge.
    spot = np.zeros_like(mask)
    spot[40:47, 60:66] = True
    one = guide_fill("biharmonic", batch[:1], spot[None])[0].transpose(1, 2, 0)
    np.testing.assert_allclose(one, classical_fill("biharmonic", image, spot), atol=1e-4)
    telea = guide_fill("telea", batch[:1], mask[None])[0].transpose(1, 2, 0)
    np.testing.assert_allclose(telea, classical_fill("telea", image, mask), atol=1e-6)
    assert np.array_equal(out[1], batch[1])  # a window without holes is returned as it is
    # ...and so is one without a known pixel (nothing to fill from; training crops can be).
    whole = guide_fill("biharmonic", batch[:1], np.ones_like(holes[:1]))
    assert np.array_equal(whole, batch[:1])


def test_batched_guide_equals_one_solve_per_window() -> None:
    # Windows of one batch share a sparse solve but stay separate problems: each is
    # mirrored at its own edges and clipped to its own known range.
    image, mask = _case()
    rng = np.random.default_rng(3)
    crops, holes = [], []
    for k in range(5):
        y, x = rng.integers(0, 90 - 32), rng.integers(0, 130 - 32)
        crop = image[y : y + 32, x : x + 32] * (0.3 + 0.15 * k)  # different ranges
        hole = mask[y : y + 32, x : x + 32].copy()
        hole[k : k + 3, 30 - k : 32] = True  # touches the window's edge
        crops.append(crop.transpose(2, 0, 1))
        holes.append(hole)
    batch, holes = np.stack(crops).astype(np.float32), np.stack(holes)
    out = guide_fill("biharmonic", batch, holes)
    for i in range(len(batch)):
        one = fill_biharmonic(batch[i].transpose(1, 2, 0), holes[i], channel_axis=-1)
        assert np.array_equal(out[i], one.transpose(2, 0, 1))


def test_weights_round_trip_keeps_the_guide(tmp_path) -> None:
    _, opt = _models()
    path = save_weights(opt, tmp_path / "o.safetensors")
    back = load_model(path)
    assert back.config.guide == "biharmonic" and back.config.head_kernel == 3
    x, guide, valid = torch.rand(1, 3, 12, 12), torch.rand(1, 3, 12, 12), torch.ones(1, 1, 12, 12)
    with torch.no_grad():
        assert torch.equal(back(x, guide, valid), opt(x, guide, valid))


def test_inpainter_runs_the_guided_stage_on_every_hole() -> None:
    rep, opt = _models()
    image, mask = _case()
    both = Inpainter(rep, opt, device="cpu", backend="torch", tile_size=64)
    assert both.stage2_guide == "biharmonic"
    one = Inpainter(rep, None, device="cpu", backend="torch", tile_size=64)
    out, first = both.inpaint(image, mask), one.inpaint(image, mask)
    assert out.dtype == image.dtype
    assert np.array_equal(out[~mask], image[~mask])
    # Stage 2 changed the stroke, the spot and the lone dead pixel (no minimum width).
    rows = np.arange(90)[:, None]
    for part in (rows < 40, (rows >= 50) & (rows < 65), rows == 70):
        sel = mask & part
        assert sel.any() and np.abs(out[sel] - first[sel]).max() > 1e-4
    # uint8 and grayscale go through the same path.
    gray = (image[..., 0] * 255).astype(np.uint8)
    g_out = both.inpaint(gray, mask)
    assert g_out.dtype == np.uint8 and np.array_equal(g_out[~mask], gray[~mask])


def test_guide_computed_while_stage_one_runs_gives_the_same_pixels(monkeypatch) -> None:
    import threading

    import rnon_engine.inference.classical as classical

    rep, opt = _models()
    image, mask = _case()
    threads_seen: set[str] = set()
    real = classical.guide_fill

    def spy(*args):
        threads_seen.add(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(classical, "guide_fill", spy)
    inline = Inpainter(rep, opt, device="cpu", backend="torch", tile_size=64)
    inline.parallel_guide = False
    ref = inline.inpaint(image, mask)
    assert threads_seen == {threading.current_thread().name}
    threads_seen.clear()
    inline.parallel_guide = True
    out = inline.inpaint(image, mask)
    assert threads_seen and all(n.startswith("rnon-guide") for n in threads_seen)
    assert np.array_equal(out, ref)
    gray = (image[..., 0] * 255).astype(np.uint8)
    inline.parallel_guide = False
    g_ref = inline.inpaint(gray, mask)
    inline.parallel_guide = True
    assert np.array_equal(inline.inpaint(gray, mask), g_ref)


def test_one_thread_keeps_the_guide_on_the_calling_thread(monkeypatch) -> None:
    import rnon_engine.inference.classical as classical

    rep, opt = _models()
    before = torch.get_num_threads()
    try:
        assert not Inpainter(rep, opt, device="cpu", threads=1).parallel_guide
    finally:
        torch.set_num_threads(before)
    assert not classical.spare_core(1)
    monkeypatch.setattr(classical.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert not classical.spare_core(None)
    monkeypatch.setattr(classical.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert classical.spare_core(None) and classical.spare_core(2)


def test_guided_stage_refuses_the_whole_image_region() -> None:
    rep, opt = _models()
    with pytest.raises(InputError, match="stage2_region='band'"):
        Inpainter(rep, opt, device="cpu", stage2_region="image")


def test_trainer_trains_a_guided_stage_two(tmp_path) -> None:
    from rnon_engine.train.trainer import guide_fill as train_guide

    image, mask = _case()
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    valid = torch.from_numpy(~mask)[None, None].float()
    got = train_guide("biharmonic", x, valid)[0].permute(1, 2, 0).numpy()
    batch = image.transpose(2, 0, 1)[None]
    ref = guide_fill("biharmonic", batch, mask[None])[0].transpose(1, 2, 0)
    np.testing.assert_allclose(got, ref, atol=1e-6)


@pytest.mark.skipif(not ort_available(), reason="needs onnxruntime and onnx")
def test_onnxruntime_backend_and_exported_files_match_torch(tmp_path) -> None:
    from rnon_engine.export.onnx_export import export_graphs

    rep, opt = _models()
    save_weights(opt, tmp_path / "o.safetensors")
    weights = save_weights(rep, tmp_path / "r.safetensors", stage2_file="o.safetensors")
    image, mask = _case()
    eager = Inpainter.from_pretrained(weights, "cpu", backend="torch", tile_size=64)
    fast = Inpainter.from_pretrained(weights, "cpu", tile_size=64)
    assert fast.backend == "onnxruntime" and fast.stage2_guide == "biharmonic"
    ref, out = eager.inpaint(image, mask), fast.inpaint(image, mask)
    assert np.array_equal(out[~mask], image[~mask])
    assert np.abs(out - ref).max() <= TOLERANCE
    # The exported files run the guided stage through the inpainter too (exact band), and
    # the one-graph pipeline for other tools says it holds stage 1 only.
    paths = export_graphs(rep, opt, tmp_path / "onnx")
    exact = Inpainter(rep, opt, device="cpu", backend="torch", tile_size=64, stage2_halo=None)
    onnx = Inpainter.from_pretrained(paths["repair"], tile_size=64)
    assert onnx.stage2_guide == "biharmonic"
    assert np.abs(onnx.inpaint(image, mask) - exact.inpaint(image, mask)).max() <= TOLERANCE
    from rnon_engine.inference.onnx_model import read_onnx_metadata

    assert read_onnx_metadata(paths["pipeline"])["stages"] == ["repair"]


@pytest.fixture
def packaging(tmp_path, monkeypatch):
    """``package_default`` writing into a temporary ``pretrained`` folder and run records."""
    from training import package_default

    import rnon_engine.pretrained as pretrained

    shipped = tmp_path / "pretrained"
    shipped.mkdir()
    monkeypatch.setattr(pretrained, "DIRECTORY", shipped)
    monkeypatch.setattr(package_default, "RECORD_DIR", tmp_path / "records")
    return package_default, shipped


def test_package_stage2_only_keeps_the_shipped_stage_one(tmp_path, packaging) -> None:
    import rnon_engine.pretrained as pretrained

    package_default, shipped = packaging
    rep, opt = _models()
    save_weights(rep, shipped / pretrained.REPAIR_FILE, stage2_file=pretrained.OPTIMIZE_FILE)
    before = (shipped / pretrained.REPAIR_FILE).read_bytes()
    run = tmp_path / "blend-run"
    save_weights(opt, run / "weights" / "optimize_generator.safetensors", step=7)
    (run / "CHANGES.txt").write_text("a change\n")
    written = package_default.package(run, stage2_only=True)
    assert written == (shipped / pretrained.OPTIMIZE_FILE,)
    assert (shipped / pretrained.REPAIR_FILE).read_bytes() == before
    back = load_model(written[0])
    assert back.config.guide == "biharmonic" and back.metadata["step"] == 7
    assert (tmp_path / "records" / "blend-run" / "CHANGES.txt").read_text() == "a change\n"
    with pytest.raises(SystemExit, match="train both stages first"):
        package_default.package(run)


def test_package_stage1_only_keeps_the_shipped_stage_two(tmp_path, packaging) -> None:
    import rnon_engine.pretrained as pretrained

    package_default, shipped = packaging
    rep, opt = _models()
    save_weights(opt, shipped / pretrained.OPTIMIZE_FILE, step=3)
    before = (shipped / pretrained.OPTIMIZE_FILE).read_bytes()
    run = tmp_path / "thin-run"
    save_weights(rep, run / "weights" / "repair_generator.safetensors", step=11)
    written = package_default.package(run, stage1_only=True)
    assert written == (shipped / pretrained.REPAIR_FILE,)
    assert (shipped / pretrained.OPTIMIZE_FILE).read_bytes() == before
    back = load_model(written[0])
    assert back.metadata["step"] == 11 and back.metadata["stage2_file"] == pretrained.OPTIMIZE_FILE
    assert back.metadata["run"] == "thin-run"
    # the pair loads as the default model does: stage 1 names its stage 2 beside it
    pair = Inpainter.from_pretrained(written[0], "cpu", backend="torch")
    assert pair.optimize is not None and pair.optimize.metadata["step"] == 3
    with pytest.raises(SystemExit, match="not both"):
        package_default.package(run, stage1_only=True, stage2_only=True)
    (run / "weights" / "repair_generator.safetensors").unlink()
    with pytest.raises(SystemExit, match="train stage 1 first"):
        package_default.package(run, stage1_only=True)


def test_package_both_stages_writes_a_float16_pair(tmp_path, packaging) -> None:
    import rnon_engine.pretrained as pretrained

    package_default, shipped = packaging
    rep, opt = _models()
    run = tmp_path / "full-run"
    save_weights(rep, run / "weights" / "repair_generator.safetensors", step=5)
    save_weights(opt, run / "weights" / "optimize_generator.safetensors", step=6)
    written = package_default.package(run)
    assert written == (shipped / pretrained.REPAIR_FILE, shipped / pretrained.OPTIMIZE_FILE)
    r, o = (load_model(p) for p in written)
    assert (r.metadata["stage"], r.metadata["step"]) == ("repair", 5)
    assert (o.metadata["stage"], o.metadata["step"]) == ("optimize", 6)
    assert r.metadata["stage2_file"] == pretrained.OPTIMIZE_FILE and "stage2_file" not in o.metadata
    from safetensors import safe_open

    with safe_open(written[0], "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys() if f.get_tensor(k).is_floating_point()}
    assert dtypes == {torch.float16}


def test_the_packaged_default_has_a_guided_stage_two() -> None:
    inp = Inpainter.from_pretrained("default", "cpu", backend="torch")
    assert inp.stage2_guide == "biharmonic"
    assert inp.optimize.metadata.get("run") == "s2-w05-d28"
    # The eighth release's stage 2: 16 channels, one block of two dilated branches, so its
    # whole receptive field (10 px) fits in the inpainter's stage-2 band.
    assert inp.optimize.config.blocks == 1 and inp.optimize.config.halo == 10 <= inp.stage2_halo
    assert inp.optimize.config.channels == 16 and inp.optimize.config.dilations == (2, 8)
    # The eighth release's stage 1: the seventh's three-quarter width, its last decoder
    # layer widened to 16 outputs.
    assert inp.repair.metadata.get("run") == "s1-head16"
    assert inp.repair.config.width == 0.1875 and inp.repair.config.head_channels == 16
    with pytest.raises(InputError, match="stage2_region='band'"):
        Inpainter.from_pretrained("default", "cpu", stage2_region="image")
