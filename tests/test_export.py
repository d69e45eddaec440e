"""ONNX export and bioimage.io package: the graphs equal the networks, ONNX Runtime runs them
through the inpainter's tiling with the torch path's results, and the package passes
bioimage.io's own test."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from rnon_engine import InputError, WeightsError, create_model, save_weights  # noqa: E402
from rnon_engine.export.graphs import RepairGraph, pushpull_fill_unrolled  # noqa: E402
from rnon_engine.export.onnx_export import FILES, export_graphs  # noqa: E402
from rnon_engine.inference.inpainter import Inpainter  # noqa: E402
from rnon_engine.inference.onnx_model import TOLERANCE  # noqa: E402
from rnon_engine.inference.provenance import describe  # noqa: E402
from rnon_engine.inference.settings import NET_WINDOW_MULTIPLE  # noqa: E402
from rnon_engine.nn.prefill import pushpull_fill  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIZES = [(1, 1), (2, 9), (5, 7), (16, 16), (37, 53), (64, 300), (96, 128)]


def _tiny(
    prefill: str = "pushpull", depth: int = 5, head_channels: int = 0
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Small generators with every layer non-trivial (the zero-initialised heads randomised)."""
    gen = torch.Generator().manual_seed(1)
    repair = create_model(
        "rnon-repair", width=0.125, depth=depth, prefill=prefill, head_channels=head_channels
    )
    optimize = create_model("rnon-optimize", width=0.25, blocks=2)
    with torch.no_grad():
        for net in (repair, optimize):
            for name, p in net.named_parameters():
                if name.startswith(("head", "tail")):
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
            for name, b in net.named_buffers():
                if name.endswith("running_var"):
                    b.copy_(0.5 + torch.rand(b.shape, generator=gen))
                elif name.endswith("running_mean"):
                    b.copy_(torch.randn(b.shape, generator=gen) * 0.1)
    return repair.eval(), optimize.eval()


def _batch(h: int, w: int, n: int = 2, hole: float = 0.3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, h, w, generator=g)
    holes = torch.rand(n, 1, h, w, generator=g) < hole
    holes[..., 0, 0] = False  # at least one known pixel
    return x, holes


@pytest.mark.parametrize("h,w", [*SIZES, (3, 100), (300, 7), (130, 260)])
@pytest.mark.parametrize("hole", [0.0, 0.4, 0.9])
def test_pushpull_unrolled_equals_recursive(h: int, w: int, hole: float) -> None:
    x, holes = _batch(h, w, hole=hole)
    valid = (~holes).float()
    ref = pushpull_fill(x * valid, valid)
    out = pushpull_fill_unrolled(x * valid, valid)
    assert torch.allclose(out, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("prefill,head_channels", [("pushpull", 0), ("none", 0), ("pushpull", 16)])
@pytest.mark.parametrize("pad", [1, 16, 32])
def test_repair_graph_equals_forward(prefill: str, head_channels: int, pad: int) -> None:
    repair, _ = _tiny(prefill, head_channels=head_channels)
    graph = RepairGraph(repair).eval()
    for h, w in SIZES:
        x, holes = _batch(h, w)
        valid = (~holes).float()
        with torch.no_grad():
            ref = valid * x + (1 - valid) * repair(x, valid, pad_to=pad)
            out = graph(x, holes.float(), torch.zeros(pad))
        assert torch.allclose(out, ref, atol=1e-6, rtol=0), (h, w)
        assert torch.equal(out[valid.expand_as(x) > 0], x[valid.expand_as(x) > 0])


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], tuple]:
    repair, optimize = _tiny()
    out = tmp_path_factory.mktemp("onnx")
    paths = export_graphs(repair, optimize, out, metadata={"source": "tiny test model"})
    return paths, (repair, optimize)


def _session(path: Path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def test_export_writes_its_files_and_nothing_else(exported) -> None:
    paths, _ = exported
    folder = paths["repair"].parent
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths.values())
    # A push-pull stage 1 and a stage 2 that is not guided: every file but the guided
    # stage 2's box graph.
    assert sorted(paths) == sorted(set(FILES) - {"optimize_box"})
    assert all(paths[role].name == FILES[role] for role in paths)


def test_onnx_graphs_match_torch_on_many_sizes(exported) -> None:
    paths, (repair, optimize) = exported
    srep, sopt, spipe = (_session(paths[k]) for k in ("repair", "optimize", "pipeline"))
    for h, w in SIZES:
        x, holes = _batch(h, w)
        valid = (~holes).float()
        for pad in (16, repair.multiple):
            with torch.no_grad():
                ref = valid * x + (1 - valid) * repair(x, valid, pad_to=pad)
            feeds = {"image": x.numpy(), "mask": holes.float().numpy(), "pad": np.zeros(pad)}
            feeds["pad"] = feeds["pad"].astype(np.float32)
            out = srep.run(None, feeds)[0]
            assert out.shape == (2, 3, h, w)
            np.testing.assert_allclose(out, ref.numpy(), atol=TOLERANCE, rtol=0)
        with torch.no_grad():
            ref2 = optimize(x).numpy()
            stage1 = valid * x + (1 - valid) * repair(x, valid)
            pipe = valid * stage1 + (1 - valid) * optimize(stage1)
        np.testing.assert_allclose(
            sopt.run(None, {"image": x.numpy()})[0], ref2, atol=TOLERANCE, rtol=0
        )
        out = spipe.run(None, {"image": x.numpy(), "mask": holes.float().numpy()})[0]
        np.testing.assert_allclose(out, pipe.numpy(), atol=TOLERANCE, rtol=0)


def _scene(shape=(150, 170)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = np.stack(
        [np.sin(yy / 9.0), np.cos(xx / 7.0), np.sin((yy + xx) / 13.0)], axis=-1
    ).astype(np.float32)
    image += rng.normal(0, 0.05, image.shape).astype(np.float32)
    mask = np.zeros(shape, bool)
    mask[20:26, 30:37] = True  # small holes: packed windows at pad_to=16
    mask[120:124, 140:150] = True
    mask[40:110, 60:140] = True  # a large hole: blended tile-sized windows
    return image, mask


@pytest.mark.parametrize("region", ["band", "image"])
def test_inpainter_onnx_matches_torch(exported, region: str) -> None:
    paths, (repair, optimize) = exported
    image, mask = _scene()
    kw = {"tile_size": 64, "stage2_region": region}
    # ONNX models run stage 2 on the exact band (full receptive radius): stage2_halo=None.
    ref = Inpainter(repair, optimize, device="cpu", stage2_halo=None, **kw).inpaint(image, mask)
    inp = Inpainter.from_pretrained(paths["repair"], **kw)
    assert inp.device is None and inp.window_multiple == NET_WINDOW_MULTIPLE
    out = inp.inpaint(image, mask)
    assert out.dtype == image.dtype and out.shape == image.shape
    scale = float(np.percentile(image, 99.9) - np.percentile(image, 0.1))
    assert np.abs(out - ref).max() <= TOLERANCE * scale
    if region == "band":
        assert np.array_equal(out[~mask], image[~mask])
    assert not np.array_equal(out[mask], image[mask])


def test_inpainter_onnx_grayscale_uint16_and_repair_stage(exported) -> None:
    paths, (repair, optimize) = exported
    image, mask = _scene((90, 75))
    gray = (image[..., 0] * 1000 + 2000).astype(np.uint16)
    torch_inp = Inpainter(repair, optimize, device="cpu", stage2_halo=None)
    onnx_inp = Inpainter.from_pretrained(paths["repair"])
    for stages in ("both", "repair"):
        ref = torch_inp.inpaint(gray, mask, stages=stages)
        out = onnx_inp.inpaint(gray, mask, stages=stages)
        assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
        assert np.array_equal(out[~mask], gray[~mask])


def test_provenance_of_onnx_model_is_what_describe_says(exported) -> None:
    paths, _ = exported
    inp = Inpainter.from_pretrained(str(paths["repair"]))
    assert inp.provenance == describe(str(paths["repair"]))
    assert inp.provenance["stages"] == ["repair", "optimize"]
    assert inp.provenance["weights"]["optimize"] == str(paths["optimize"])


def test_onnx_files_that_cannot_serve_are_refused(exported, tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    paths, _ = exported
    with pytest.raises(WeightsError, match="stage-1 file"):
        Inpainter.from_pretrained(paths["pipeline"])
    with pytest.raises(WeightsError, match="not found"):
        Inpainter.from_pretrained(tmp_path / "missing.onnx")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    foreign = helper.make_model(graph)
    onnx.save(foreign, tmp_path / "foreign.onnx")
    with pytest.raises(WeightsError, match="not one exported by napari-rnon"):
        Inpainter.from_pretrained(tmp_path / "foreign.onnx")
    (tmp_path / "lone").mkdir()
    lone = tmp_path / "lone" / FILES["repair"]
    lone.write_bytes(paths["repair"].read_bytes())
    with pytest.raises(WeightsError, match="stage-2 file"):
        Inpainter.from_pretrained(lone)
    (tmp_path / "cut.onnx").write_bytes(paths["repair"].read_bytes()[:5000])
    with pytest.raises(WeightsError, match="not a readable ONNX model"):
        Inpainter.from_pretrained(tmp_path / "cut.onnx")


def test_onnx_inpainter_never_imports_torch(exported) -> None:
    paths, _ = exported
    code = (
        "import sys, numpy as np\n"
        "from rnon_engine.inference.inpainter import Inpainter\n"
        f"inp = Inpainter.from_pretrained({str(paths['repair'])!r}, threads=1)\n"
        "img = np.random.default_rng(0).random((40, 50, 3)).astype(np.float32)\n"
        "m = np.zeros((40, 50), bool); m[10:20, 10:30] = True\n"
        "out = inp.inpaint(img, m)\n"
        "assert np.array_equal(out[~m], img[~m]) and not np.array_equal(out[m], img[m])\n"
        "print('torch' in sys.modules)\n"
    )
    env = {"PYTHONPATH": f"{REPO / 'src'}:{REPO}", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"


def test_export_cli_refuses_bad_arguments(tmp_path: Path, capsys) -> None:
    from rnon_engine.export.cli import main

    afile = tmp_path / "file.txt"
    afile.write_text("x")
    assert main(["--format", "onnx", "--out", str(afile)]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["--format", "onnx", "--out", str(tmp_path / "x.zip")]) == 2
    assert main(["--weights", str(tmp_path / "no.safetensors"), "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["--weights", "telea", "--out", str(tmp_path / "o")]) == 2
    assert "classical" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.slow
def test_export_cli_default_model_matches_torch(tmp_path: Path) -> None:
    env = {"PYTHONPATH": f"{REPO / 'src'}:{REPO}", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "training.export", "--weights", "default", "--format", "onnx"]
    res = subprocess.run([*cmd, "--out", str(tmp_path)], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    from skimage import data

    image = data.astronaut()[:200, :260]
    mask = np.zeros(image.shape[:2], bool)
    mask[30:50, 40:70] = True
    mask[150:156, 5:250] = True
    ref = Inpainter.from_pretrained("default", "cpu").inpaint(image, mask)
    out = Inpainter.from_pretrained(tmp_path / FILES["repair"]).inpaint(image, mask)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


@pytest.mark.slow
def test_bioimageio_package_passes_bioimageio_core_test(exported, tmp_path: Path) -> None:
    pytest.importorskip("bioimageio.core")
    import yaml
    from bioimageio.core import test_model

    from rnon_engine.export.bioimageio_package import RNON_DOI, export_bioimageio

    _, (repair, optimize) = exported
    rpath = save_weights(repair, tmp_path / "w" / "repair.safetensors")
    opath = save_weights(optimize, tmp_path / "w" / "optimize.safetensors")
    package = export_bioimageio(rpath, tmp_path / "pkg", stage2=opath)
    assert package == tmp_path / "pkg" / "rnon-inpainting.zip"
    summary = test_model(package)
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed
    with zipfile.ZipFile(package) as z:
        names = set(z.namelist())
        rdf = yaml.safe_load(z.read("rdf.yaml"))
    assert {"rnon.onnx", "rnon.pt", "cover.png", "README.md", "test_image.npy"} <= names
    assert set(rdf["weights"]) == {"onnx", "torchscript"}
    assert [t["id"] for t in rdf["inputs"]] == ["image", "mask"]
    assert rdf["license"] == "BSD-3-Clause"
    assert RNON_DOI in [c.get("doi") for c in rdf["cite"]]
    pre = [p for p in rdf["inputs"][0]["preprocessing"] if p["id"] != "ensure_dtype"]
    assert [p["id"] for p in pre] == ["scale_range", "clip"]
    assert (pre[0]["kwargs"]["min_percentile"], pre[0]["kwargs"]["max_percentile"]) == (0.1, 99.9)
    assert "Model card" in z_read(package, "README.md")


def z_read(package: Path, name: str) -> str:
    with zipfile.ZipFile(package) as z:
        return z.read(name).decode()


def test_onnx_model_refuses_a_gpu_device(exported) -> None:
    paths, _ = exported
    with pytest.raises(InputError, match="runs on the CPU with ONNX Runtime"):
        Inpainter.from_pretrained(paths["repair"], "cuda")


@pytest.mark.slow
def test_rnon_batch_onnx_workers_never_import_torch(exported, tmp_path: Path) -> None:
    """``rnon-batch --workers 2`` with an ONNX model, where importing torch is fatal.

    A ``torch`` package that records its import and fails comes first on the path of the
    driver and of every worker process it starts.
    """
    import tifffile

    paths, _ = exported
    poison = tmp_path / "poison" / "torch"
    poison.mkdir(parents=True)
    marker = tmp_path / "torch-imported"
    poison.joinpath("__init__.py").write_text(
        "import os, pathlib\n"
        "pathlib.Path(os.environ['RNON_TORCH_MARKER']).write_text(str(os.getpid()))\n"
        "raise ImportError('torch must not be imported here')\n"
    )
    image, mask = _scene((64, 80))
    stack = (np.moveaxis(image, -1, 0) * 1000 + 2000).astype(np.uint16)  # 3 planes
    tifffile.imwrite(tmp_path / "in.tif", stack, photometric="minisblack")
    tifffile.imwrite(tmp_path / "m.tif", mask.astype(np.uint8))
    out = tmp_path / "out.tif"
    env = {
        "PYTHONPATH": f"{tmp_path / 'poison'}:{REPO / 'src'}:{REPO}",
        "OMP_NUM_THREADS": "1",
        "PATH": "/usr/bin:/bin",
        "RNON_TORCH_MARKER": str(marker),
        "HOME": str(tmp_path),
    }
    cmd = [sys.executable, "-m", "rnon_engine.batch.cli", str(tmp_path / "in.tif")]
    cmd += ["--mask", str(tmp_path / "m.tif"), "-o", str(out), "--no-progress"]
    cmd += ["--model", str(paths["repair"]), "--workers", "2"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert not marker.exists(), f"process {marker.read_text()} imported torch"
    got = tifffile.imread(out)
    ref = Inpainter.from_pretrained(paths["repair"]).inpaint(stack, mask, channel_axis=None)
    assert np.array_equal(got, ref)


def test_stage1_only_export_runs_stage1_only(tmp_path: Path) -> None:
    repair, _ = _tiny()
    paths = export_graphs(repair, None, tmp_path)
    assert sorted(paths) == ["pipeline", "repair", "repair_box", "repair_small"]  # push-pull
    inp = Inpainter.from_pretrained(paths["repair"])
    assert inp.provenance["stages"] == ["repair"] and inp.optimize is None
    image, mask = _scene((70, 90))
    ref = Inpainter(repair, None, device="cpu").inpaint(image, mask)
    scale = float(np.percentile(image, 99.9) - np.percentile(image, 0.1))
    assert np.abs(inp.inpaint(image, mask) - ref).max() <= TOLERANCE * scale
    with pytest.raises(InputError, match="no optimization network"):
        inp.inpaint(image, mask, stages="optimize")
