"""The ONNX Runtime backend of the torch networks (inference/ort_runner.py)."""

import shutil

import numpy as np
import pytest
import torch

from rnon_engine import InputError, create_model, save_weights
from rnon_engine.inference.inpainter import Inpainter
from rnon_engine.inference.onnx_model import TOLERANCE
from rnon_engine.inference.ort_runner import ort_available

pytestmark = pytest.mark.skipif(not ort_available(), reason="needs onnxruntime and onnx")


def _models(seed: int = 0):
    torch.manual_seed(seed)
    rep = create_model("rnon-repair", width=0.125, depth=5)
    opt = create_model("rnon-optimize", width=0.125, blocks=2)
    with torch.no_grad():  # the optimize tail starts at zero (identity): make it act
        for p in opt.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return rep, opt


def _case():
    rng = np.random.default_rng(1)
    image = rng.random((90, 130, 3), dtype=np.float32)
    mask = np.zeros((90, 130), bool)
    mask[20:26, 5:120] = True  # a stroke (blended windows)
    yy, xx = np.mgrid[:90, :130]
    mask |= (yy - 60) ** 2 + (xx - 30) ** 2 <= 16  # a spot (packed window)
    return image, mask


@pytest.fixture
def weights(tmp_path):
    rep, opt = _models()
    save_weights(opt, tmp_path / "o.safetensors")
    return save_weights(rep, tmp_path / "r.safetensors", stage2_file="o.safetensors")


@pytest.mark.parametrize("kw", [{}, {"stage2_halo": None}, {"stage2_region": "image"}])
def test_onnxruntime_matches_eager_torch(weights, kw):
    image, mask = _case()
    eager = Inpainter.from_pretrained(weights, "cpu", backend="torch", tile_size=64, **kw)
    ort = Inpainter.from_pretrained(weights, "cpu", tile_size=64, **kw)
    assert (eager.backend, ort.backend) == ("torch", "onnxruntime")  # "auto" picks it on a CPU
    ref, out = eager.inpaint(image, mask), ort.inpaint(image, mask)
    if kw.get("stage2_region") != "image":  # the paper's whole-image stage 2 is not composited
        assert np.array_equal(out[~mask], image[~mask])
    diff = np.abs(out - ref)
    assert 0 < np.abs(ref - image)[mask].mean()  # the networks did change the holes
    assert diff.max() <= TOLERANCE, diff.max()


def test_export_is_cached_per_weights(weights, tmp_path):
    image, mask = _case()
    first = Inpainter.from_pretrained(weights, "cpu")
    ref = first.inpaint(image, mask)
    files = sorted(first._runner().paths.values())
    stamps = [f.stat().st_mtime_ns for f in files]
    again = Inpainter.from_pretrained(weights, "cpu")
    np.testing.assert_array_equal(again.inpaint(image, mask), ref)
    assert sorted(again._runner().paths.values()) == files
    assert [f.stat().st_mtime_ns for f in files] == stamps  # not exported again
    # Other weights get their own entry.
    rep, opt = _models(seed=3)
    save_weights(opt, tmp_path / "o2.safetensors")
    other = save_weights(rep, tmp_path / "r2.safetensors", stage2_file="o2.safetensors")
    inp = Inpainter.from_pretrained(other, "cpu")
    inp.inpaint(image, mask)
    assert inp._runner().paths["repair"] != files[0] and inp._runner().paths["repair"] != files[1]


def test_damaged_cache_entry_is_exported_again(weights):
    image, mask = _case()
    first = Inpainter.from_pretrained(weights, "cpu")
    ref = first.inpaint(image, mask)
    path = first._runner().paths["repair"]
    path.write_bytes(path.read_bytes()[:100])  # truncated
    np.testing.assert_array_equal(
        Inpainter.from_pretrained(weights, "cpu").inpaint(image, mask), ref
    )
    assert path.stat().st_size > 100


def test_preoptimized_graphs_give_the_exported_graphs_outputs(weights):
    """The cached pre-optimised graphs (opened faster) compute exactly what the export does.

    On Linux they are optimised for this machine (named by its key) and opened as they
    are; elsewhere, pre-optimised for any machine.
    """
    from rnon_engine.inference.onnx_model import MACHINE_SUFFIX, OnnxNetworks
    from rnon_engine.inference.ort_runner import machine_key

    image, mask = _case()
    inp = Inpainter.from_pretrained(weights, "cpu")
    inp.inpaint(image, mask)
    used = inp._runner().paths
    key = machine_key()
    ending = ".opt.onnx" if key is None else f".opt.{key}{MACHINE_SUFFIX}"
    assert all(p.name.endswith(ending) and p.is_file() for p in used.values())
    exported = {k: p.with_name(p.name.replace(ending, ".onnx")) for k, p in used.items()}
    assert all(p.is_file() for p in exported.values())
    plain = OnnxNetworks(exported["repair"], exported["optimize"], threads=1)
    pre = OnnxNetworks(used["repair"], used["optimize"], threads=1)
    x = np.ascontiguousarray(image[None, :64, :80].transpose(0, 3, 1, 2))
    holes = mask[None, :64, :80]
    for pad in (None, 16):
        np.testing.assert_array_equal(pre.repair(x, holes, pad), plain.repair(x, holes, pad))
    np.testing.assert_array_equal(pre.optimize(x), plain.optimize(x))


def test_backend_choice_and_errors():
    rep, opt = _models()
    # Model objects (the trainer's, whose weights change) have no file hashes: eager torch.
    assert Inpainter(rep, opt, device="cpu").backend == "torch"
    with pytest.raises(InputError, match="weights files"):
        Inpainter(rep, opt, device="cpu", backend="onnxruntime")
    with pytest.raises(InputError, match="backend must be one of"):
        Inpainter(rep, opt, device="cpu", backend="tensorrt")
    with pytest.raises(InputError, match="backend must be one of"):
        Inpainter(method="telea", backend="fast")


def test_unwritable_cache_falls_back_to_torch(weights, tmp_path, monkeypatch):
    image, mask = _case()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("RNON_CACHE_DIR", str(blocker))
    ref = Inpainter.from_pretrained(weights, "cpu", backend="torch").inpaint(image, mask)
    auto = Inpainter.from_pretrained(weights, "cpu")
    assert auto.provenance["backend"] == "onnxruntime"  # what it means to run
    with pytest.warns(RuntimeWarning, match="RNON_CACHE_DIR"):
        out = auto.inpaint(image, mask)
    assert auto.backend == auto.provenance["backend"] == "torch"  # what did run
    np.testing.assert_array_equal(out, ref)
    asked = Inpainter.from_pretrained(weights, "cpu", backend="onnxruntime")
    with pytest.raises(InputError, match="could not export"):
        asked.inpaint(image, mask)
    np.testing.assert_array_equal(image, _case()[0])  # the input is untouched


def test_sessions_do_not_spin(tmp_path) -> None:
    # Spinning intra-op threads took the core of the stage-2 guide's thread (issue 16).
    from rnon_engine.export.onnx_export import export_graphs
    from rnon_engine.inference.onnx_model import OnnxNetworks

    torch.manual_seed(0)
    rep = create_model("rnon-repair", width=0.125, depth=4).eval()
    paths = export_graphs(rep, None, tmp_path)
    nets = OnnxNetworks(paths["repair"], threads=2)
    entries = nets.session("repair").get_session_options().get_session_config_entry
    assert entries("session.intra_op.allow_spinning") == "0"


def _pushpull_export(tmp_path):
    from rnon_engine.export.onnx_export import export_graphs

    torch.manual_seed(0)
    rep = create_model("rnon-repair", width=0.125, depth=4, prefill="pushpull").eval()
    with torch.no_grad():  # the head starts at zero (the fill itself): make it act
        rep.head.weight.normal_(0, 0.5)
    return rep, export_graphs(rep, None, tmp_path / "export")


def test_small_windows_run_through_their_own_graph_with_the_same_outputs(tmp_path) -> None:
    """The small-window stage 1 (fewer push-pull levels) computes the repair graph's pixels."""
    from rnon_engine.export.graphs import SMALL_WINDOW_LEVELS, exact_side
    from rnon_engine.inference.onnx_model import OnnxNetworks, read_onnx_metadata

    rep, paths = _pushpull_export(tmp_path)
    assert (
        read_onnx_metadata(paths["repair_small"])["max_side"]
        == exact_side(SMALL_WINDOW_LEVELS)
        == 512
    )
    nets = OnnxNetworks(paths["repair"], threads=1)
    assert nets.paths["repair_small"] == paths["repair_small"]
    rng = np.random.default_rng(2)
    for n, h, w in [(3, 40, 56), (2, 64, 64), (1, 512, 530), (1, 520, 528)]:
        x = rng.random((n, 3, h, w), dtype=np.float32)
        holes = np.zeros((n, h, w), bool)
        holes[:, h // 3 : h // 2, w // 4 : w // 2] = True
        holes[-1, 0, -3:] = True  # and one at the window's corner
        box = np.array([0, h // 2, w // 4, w], np.int64)  # the holes' box
        feeds = {"image": x, "mask": holes[:, None].astype(np.float32)}
        for pad in (4, 8, 16):
            feeds["pad"] = np.zeros(pad, np.float32)
            want = nets.session("repair").run(None, feeds)[0]
            got = nets.repair(x, holes, pad)
            np.testing.assert_array_equal(got, want)
            if min(h, w) <= 512:  # the small graphs: the same values
                small = nets.session("repair_small").run(None, feeds)[0]
                np.testing.assert_array_equal(small, want)
                if pad >= 8:  # the box graph: the box of them
                    inside = nets.session("repair_box").run(None, {**feeds, "box": box})[0]
                    np.testing.assert_array_equal(inside, want[..., 0 : h // 2, w // 4 :])
            with torch.no_grad():
                eager = rep(torch.from_numpy(x), torch.from_numpy(~holes[:, None]).float(), pad)
            assert (
                np.abs(got - eager.numpy())[np.broadcast_to(holes[:, None], got.shape)].max() < 1e-4
            )


def test_a_small_window_graph_of_other_weights_is_refused_and_a_missing_one_is_not_needed(
    tmp_path,
) -> None:
    from rnon_engine import WeightsError
    from rnon_engine.export.onnx_export import export_graphs
    from rnon_engine.inference.onnx_model import OnnxNetworks

    _, paths = _pushpull_export(tmp_path)
    x = np.random.default_rng(0).random((1, 3, 32, 48), dtype=np.float32)
    holes = np.zeros((1, 32, 48), bool)
    holes[0, 10:14, 10:30] = True
    want = OnnxNetworks(paths["repair"], threads=1).repair(x, holes, 8)
    # A folder without the small graph (an older export, a partial copy): the repair graph.
    paths["repair_small"].unlink()
    lone = OnnxNetworks(paths["repair"], threads=1)
    assert "repair_small" not in lone.paths
    np.testing.assert_array_equal(lone.repair(x, holes, 8), want)
    # The small graph of other weights next to it: refused, with what to do.
    torch.manual_seed(5)
    other = create_model("rnon-repair", width=0.125, depth=4, prefill="pushpull").eval()
    theirs = export_graphs(other, None, tmp_path / "other", metadata={"source_sha256": "ab"})
    shutil.copy(theirs["repair_small"], paths["repair_small"])  # named by the repair file
    with pytest.raises(WeightsError, match="export the model again"):
        OnnxNetworks(paths["repair"], threads=1)
    with pytest.raises(WeightsError, match="export the model again"):  # not a small graph
        OnnxNetworks(paths["repair"], threads=1, small_path=theirs["repair"])
    # Given the small graph, the repair graph opens (and is checked) at its first window.
    mixed = OnnxNetworks(paths["repair"], threads=1, small_path=theirs["repair_small"])
    assert mixed.open_roles == ["repair_small"]
    with pytest.raises(WeightsError, match="export the model again"):
        mixed.session("repair")


def test_the_repair_graph_opens_at_the_first_large_window_when_small_ones_have_theirs(
    tmp_path,
) -> None:
    from rnon_engine.inference.onnx_model import OnnxNetworks
    from rnon_engine.inference.ort_runner import OrtRunner

    rep, paths = _pushpull_export(tmp_path)
    nets = OnnxNetworks(paths["repair"], threads=1, small_path=paths["repair_small"])
    assert nets.open_roles == ["repair_small"]
    rng = np.random.default_rng(3)
    small = rng.random((2, 3, 40, 48), dtype=np.float32)
    holes = np.zeros((2, 40, 48), bool)
    holes[:, 10:20, 10:20] = True
    nets.repair(small, holes, 8)
    assert nets.open_roles == ["repair_small"]  # small windows: the small graph only
    big = rng.random((1, 3, 520, 528), dtype=np.float32)
    bholes = np.zeros((1, 520, 528), bool)
    bholes[:, 100:120, 50:200] = True
    out = nets.repair(big, bholes, 8)
    assert sorted(nets.open_roles) == ["repair", "repair_small"]
    with torch.no_grad():
        eager = rep(torch.from_numpy(big), torch.from_numpy(~bholes[:, None]).float(), 8)
    assert np.abs(out - eager.numpy())[np.broadcast_to(bholes[:, None], out.shape)].max() < 1e-4
    # The inpainter's cached export uses it so.
    assert "repair_small" in OrtRunner(rep, None, key="test", threads=1).paths
