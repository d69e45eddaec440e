"""The ONNX Runtime backend of the torch networks (inference/ort_runner.py)."""

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
    """The cached pre-optimised graphs (opened faster) compute exactly what the export does."""
    from rnon_engine.inference.onnx_model import OnnxNetworks

    image, mask = _case()
    inp = Inpainter.from_pretrained(weights, "cpu")
    inp.inpaint(image, mask)
    used = inp._runner().paths
    assert all(p.name.endswith(".opt.onnx") and p.is_file() for p in used.values())
    exported = [p.with_name(p.name.replace(".opt.onnx", ".onnx")) for p in used.values()]
    assert all(p.is_file() for p in exported)
    plain = OnnxNetworks(*exported, threads=1)
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
    entries = nets._repair.get_session_options().get_session_config_entry
    assert entries("session.intra_op.allow_spinning") == "0"
