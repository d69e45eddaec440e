"""describe(): the inpainter's provenance from the weights' metadata, without torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rnon_engine import create_model, save_weights
from rnon_engine.errors import InputError, WeightsError
from rnon_engine.inference.inpainter import Inpainter, describe
from rnon_engine.inference.ort_runner import ort_available
from rnon_engine.inference.settings import STAGE2_HALO


def tiny(kind: str):
    if kind == "repair":
        return create_model("rnon-repair", width=0.125, depth=5)
    return create_model("rnon-optimize", width=0.125, blocks=1)


@pytest.fixture(scope="module")
def trainer_run(tmp_path_factory):
    """A trainer-like export: repair_generator + optimize_generator naming it."""
    run = tmp_path_factory.mktemp("run")
    repair = save_weights(tiny("repair"), run / "repair_generator.safetensors", stage="repair")
    save_weights(
        tiny("optimize"), run / "optimize_generator.safetensors", repair_weights=str(repair)
    )
    return run


def test_describe_equals_from_pretrained_provenance(trainer_run):
    path = trainer_run / "repair_generator.safetensors"
    cases = [
        ("default", {}),
        ("default", {"tile_size": 256}),
        (str(path), {}),
        (str(path), {"stage2_region": "image"}),
        (str(path), {"tile_size": 128}),
        ("telea", {}),
        ("biharmonic", {"tile_size": 64}),
    ]
    for name, kw in cases:
        expect = Inpainter.from_pretrained(name, "cpu", **kw).provenance
        assert describe(name, device="cpu", **kw) == expect, (name, kw)
    prov = describe(str(path))
    assert prov["stages"] == ["repair", "optimize"]
    assert prov["weights"]["optimize"] == str(trainer_run / "optimize_generator.safetensors")
    assert set(prov["sha256"]) == {"repair", "optimize"}
    assert describe("telea")["stages"] == ["telea"] and "weights" not in describe("telea")
    json.dumps(prov)  # outputs record it as JSON


def test_describe_explicit_and_named_stage2(tmp_path):
    rep = save_weights(tiny("repair"), tmp_path / "r.safetensors", stage2_file="o.safetensors")
    opt = save_weights(tiny("optimize"), tmp_path / "o.safetensors")
    alone = save_weights(tiny("repair"), tmp_path / "alone.safetensors")
    for name, kw in [(rep, {}), (alone, {}), (alone, {"stage2": opt})]:
        inp = Inpainter.from_pretrained(name, "cpu", **kw)
        assert describe(name, device="cpu", **kw) == inp.provenance
    assert describe(rep)["weights"]["optimize"] == str(opt)
    assert describe(alone)["stages"] == ["repair"]
    assert describe(alone, stage2=opt)["sha256"]["optimize"] == describe(rep)["sha256"]["optimize"]


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"backend": "torch"},
        {"stage2_halo": None, "grid_tile": 128},
        {"stage2_halo": 8, "grid_tile": None, "backend": "auto"},
    ],
)
def test_provenance_records_the_backend_and_the_network_settings(trainer_run, kw):
    path = str(trainer_run / "repair_generator.safetensors")
    inp = Inpainter.from_pretrained(path, "cpu", **kw)
    prov = describe(path, device="cpu", **kw)
    assert prov == inp.provenance
    picked = "onnxruntime" if ort_available() else "torch"
    assert prov["backend"] == inp.backend == kw.get("backend", "auto").replace("auto", picked)
    assert prov["stage2_halo"] == kw.get("stage2_halo", STAGE2_HALO)
    assert prov["grid_tile"] == kw.get("grid_tile", "auto")
    # A GPU gets eager torch (describe takes the device as from_pretrained does).
    assert describe(path, device="cuda", **kw)["backend"] == "torch"
    assert not {"backend", "stage2_halo", "grid_tile"} & set(describe("telea"))


def test_provenance_backend_errors_match(trainer_run):
    path = str(trainer_run / "repair_generator.safetensors")
    for kw, needle in [
        ({"backend": "tensorrt"}, "backend must be one of"),
        ({"backend": "onnxruntime", "device": "cuda"}, "on the CPU"),
    ]:
        with pytest.raises(InputError, match=needle):
            describe(path, **kw)
    for name in (path, "telea"):
        with pytest.raises(InputError, match="backend must be one of") as loaded:
            Inpainter.from_pretrained(name, "cpu", backend="tensorrt")
        with pytest.raises(InputError) as described:
            describe(name, device="cpu", backend="tensorrt")
        assert str(described.value) == str(loaded.value)


def test_device_type_follows_resolve_device():
    from rnon_engine.device import device_type, resolve_device

    assert device_type("auto") == resolve_device("auto").type
    assert device_type(None) == resolve_device(None).type
    assert [device_type(d) for d in ("cpu", "cuda", "cuda:1", "mps")] == [
        "cpu", "cuda", "cuda", "mps"
    ]


def test_describe_refuses_what_from_pretrained_refuses(tmp_path):
    from safetensors.numpy import save_file

    good = save_weights(tiny("repair"), tmp_path / "good.safetensors")
    data = good.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[:-64])
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors" * 4)
    import numpy as np

    save_file({"w": np.zeros(3, np.float32)}, str(tmp_path / "foreign.safetensors"))
    opt = save_weights(tiny("optimize"), tmp_path / "opt.safetensors")
    named = save_weights(tiny("repair"), tmp_path / "named.safetensors", stage2_file="gone.st")
    cases = [
        (tmp_path / "missing.safetensors", {}, WeightsError, "not found"),
        (tmp_path / "trunc.safetensors", {}, WeightsError, "corrupt or truncated"),
        (tmp_path / "junk.safetensors", {}, WeightsError, "corrupt or truncated"),
        (tmp_path / "foreign.safetensors", {}, WeightsError, "not napari-rnon weights"),
        (opt, {}, WeightsError, "'rnon-optimize' model"),
        (good, {"stage2": good}, WeightsError, "not 'rnon-optimize'"),
        (named, {}, WeightsError, "does not exist"),
        ("tela", {}, InputError, "unknown method"),
        ("telea", {"tile_size": 8}, InputError, "tile_size"),
        (good, {"stage2_region": "everywhere"}, InputError, "stage2_region"),
    ]
    for name, kw, err, needle in cases:
        with pytest.raises(err, match=needle) as described:
            describe(name, **kw)
        with pytest.raises(err) as loaded:
            Inpainter.from_pretrained(name, "cpu", **kw)
        assert str(described.value) == str(loaded.value), name


def test_describe_and_the_batch_driver_do_not_import_torch(trainer_run):
    code = (
        "import sys\n"
        "from rnon_engine.inference.provenance import describe\n"
        "import rnon_engine.batch.driver, rnon_engine.batch.cli\n"
        "describe('default', device='cpu')\n"
        f"describe({str(trainer_run / 'repair_generator.safetensors')!r}, device='cpu')\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "named",
    [
        "/etc/passwd",
        "../o.safetensors",
        "sub/o.safetensors",
        "..",
        "..\\o.safetensors",
    ],
)
def test_stage2_file_metadata_must_be_a_sibling_name(tmp_path, named):
    """An absolute path or ../ in the metadata is refused without looking at the file system.

    The message is the same whether the named file exists or not (here one of them exists:
    o.safetensors one folder up), so a weights file cannot probe for files elsewhere.
    """
    save_weights(tiny("optimize"), tmp_path / "o.safetensors")
    (tmp_path / "sub").mkdir()
    save_weights(tiny("optimize"), tmp_path / "sub" / "o.safetensors")
    folder = tmp_path / "models"
    folder.mkdir()
    rep = save_weights(tiny("repair"), folder / "r.safetensors", stage2_file=named)
    for call in (lambda: describe(rep), lambda: Inpainter.from_pretrained(rep, "cpu")):
        with pytest.raises(WeightsError, match="only the name of a file next to") as err:
            call()
        assert "does not exist" not in str(err.value)
    # stage2= given explicitly is still accepted
    assert describe(rep, stage2=tmp_path / "o.safetensors")["stages"] == ["repair", "optimize"]
