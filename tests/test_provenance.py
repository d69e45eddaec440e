"""describe(): the inpainter's provenance from the weights' metadata, without torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rnon_engine import create_model, save_weights
from rnon_engine.errors import InputError, WeightsError
from rnon_engine.inference.inpainter import Inpainter, describe


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
        ("default", {"tile_size": 256, "stage2_region": "image"}),
        (str(path), {}),
        (str(path), {"tile_size": 128}),
        ("telea", {}),
        ("biharmonic", {"tile_size": 64}),
    ]
    for name, kw in cases:
        expect = Inpainter.from_pretrained(name, "cpu", **kw).provenance
        assert describe(name, **kw) == expect, (name, kw)
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
        assert describe(name, **kw) == Inpainter.from_pretrained(name, "cpu", **kw).provenance
    assert describe(rep)["weights"]["optimize"] == str(opt)
    assert describe(alone)["stages"] == ["repair"]
    assert describe(alone, stage2=opt)["sha256"]["optimize"] == describe(rep)["sha256"]["optimize"]


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
        f"describe('default'); describe({str(trainer_run / 'repair_generator.safetensors')!r})\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
