"""The safetensors weights format: round trips and every way a file can be wrong."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from rnon_engine import WeightsError, create_model, load_model, read_metadata, save_weights
from rnon_engine.nn.weights import FORMAT_VERSION, file_sha256

ROOT = Path(__file__).resolve().parents[1]


def _trained_like(name: str = "rnon-repair", **overrides):
    """A small model whose BN statistics and buffers differ from a fresh one."""
    model = create_model(name, **{"width": 0.125, "depth": 4, **overrides})
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 3, 32, 32), (torch.rand(2, 1, 32, 32) > 0.3).float())
    return model.eval()


def _inputs():
    g = torch.Generator().manual_seed(1)
    return torch.rand(1, 3, 40, 36, generator=g), (torch.rand(1, 1, 40, 36, generator=g) > 0.3)


def test_round_trip_gives_equal_outputs(tmp_path: Path) -> None:
    model = _trained_like()
    path = save_weights(model, tmp_path / "sub" / "g.safetensors")
    loaded = load_model(path)
    assert loaded.model_name == "rnon-repair" and loaded.config == model.config
    assert not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    image, mask = _inputs()
    with torch.no_grad():
        assert torch.equal(loaded(image, mask.float()), model(image, mask.float()))
    assert loaded.weights_sha256 == file_sha256(path)
    assert not list(path.parent.glob("*.tmp"))  # the atomic write left nothing behind


def test_round_trip_of_a_tuple_config(tmp_path: Path) -> None:
    model = create_model("rnon-optimize", blocks=2, dilations=(1, 3), fuse_kernel=3)
    loaded = load_model(save_weights(model, tmp_path / "o.safetensors"))
    assert loaded.config == model.config and loaded.config.dilations == (1, 3)


def test_metadata_round_trip(tmp_path: Path) -> None:
    model = _trained_like()
    extra = {"step": 1200, "note": "tiny", "losses": {"hole": 0.25}, "pad": [1, 2]}
    path = save_weights(model, tmp_path / "g.safetensors", **extra)
    meta = read_metadata(path)
    assert meta["model_name"] == "rnon-repair"
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["config"] == dataclasses.asdict(model.config)
    assert meta["config"]["width"] == 0.125 and meta["config"]["depth"] == 4
    for key, value in extra.items():
        assert meta[key] == value
    assert load_model(path).metadata == meta


def test_reserved_metadata_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reserved"):
        save_weights(_trained_like(), tmp_path / "g.safetensors", config="mine")


def test_fp16_file_loads_as_fp32_and_close(tmp_path: Path) -> None:
    model = _trained_like()
    full = save_weights(model, tmp_path / "full.safetensors")
    half = save_weights(model, tmp_path / "half.safetensors", dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_model(half)
    assert all(
        t.dtype == torch.float32 for t in loaded.state_dict().values() if t.is_floating_point()
    )
    assert loaded.state_dict()["encoder.0.conv.weight"].dtype == torch.float32
    image, mask = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(image, mask.float()), model(image, mask.float()), atol=5e-3, rtol=0
        )


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        load_model(tmp_path / "nope.safetensors")


def test_a_folder_is_not_a_weights_file(tmp_path: Path) -> None:
    """A folder gets its own message (not 'not found'), naming the files it holds."""
    from rnon_engine.inference.inpainter import Inpainter

    with pytest.raises(WeightsError, match="is a folder.*no .safetensors file"):
        read_metadata(tmp_path)
    save_weights(_trained_like(), tmp_path / "repair_generator.safetensors")
    with pytest.raises(WeightsError, match="is a folder.*repair_generator.safetensors") as err:
        Inpainter.from_pretrained(tmp_path, "cpu")
    assert "not found" not in str(err.value)


def test_corrupt_bytes(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x93NUMPY not a safetensors file at all" * 10)
    with pytest.raises(WeightsError, match="corrupt"):
        load_model(path)


def test_pickle_file_is_refused_without_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "g.pt"
    torch.save(_trained_like().state_dict(), path)
    with pytest.raises(WeightsError, match="safetensors"):
        load_model(path)


@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_truncated_file(tmp_path: Path, keep: float) -> None:
    good = save_weights(_trained_like(), tmp_path / "g.safetensors")
    data = good.read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(WeightsError, match="truncated"):
        load_model(path)


def test_header_only_fragment(tmp_path: Path) -> None:
    good = save_weights(_trained_like(), tmp_path / "g.safetensors")
    path = tmp_path / "cut.safetensors"
    path.write_bytes(good.read_bytes()[:6])
    with pytest.raises(WeightsError):
        load_model(path)


def test_foreign_safetensors_file(tmp_path: Path) -> None:
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(WeightsError, match="not napari-rnon weights"):
        load_model(path)
    path2 = tmp_path / "foreign2.safetensors"
    save_file({"w": torch.zeros(3)}, str(path2), metadata={"format": "pt"})
    with pytest.raises(WeightsError, match="not napari-rnon weights"):
        read_metadata(path2)


def _rewrite_metadata(src: Path, dst: Path, **changes: str) -> Path:
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta.update(changes)
    meta = {k: v for k, v in meta.items() if v is not None}
    save_file(tensors, str(dst), metadata=meta)
    return dst


def test_wrong_format_version(tmp_path: Path) -> None:
    good = save_weights(_trained_like(), tmp_path / "g.safetensors")
    path = _rewrite_metadata(good, tmp_path / "v2.safetensors", format_version="2")
    with pytest.raises(WeightsError, match=r"version '2'.*reads version 1"):
        load_model(path)


def test_unknown_model_name_in_file(tmp_path: Path) -> None:
    good = save_weights(_trained_like(), tmp_path / "g.safetensors")
    path = _rewrite_metadata(good, tmp_path / "x.safetensors", model_name="rnon-future")
    with pytest.raises(WeightsError, match="rnon-future"):
        load_model(path)


def test_missing_model_name_in_file(tmp_path: Path) -> None:
    good = save_weights(_trained_like(), tmp_path / "g.safetensors")
    path = _rewrite_metadata(good, tmp_path / "x.safetensors", model_name=None)
    with pytest.raises(WeightsError, match="model name"):
        load_model(path)


def test_bad_config_json_in_file(tmp_path: Path) -> None:
    good = save_weights(_trained_like(), tmp_path / "g.safetensors")
    path = _rewrite_metadata(good, tmp_path / "x.safetensors", config="{width: 1")
    with pytest.raises(WeightsError, match="config"):
        load_model(path)
    bad = json.dumps({"width": 0.125, "depth": 99})
    path = _rewrite_metadata(good, tmp_path / "y.safetensors", config=bad)
    with pytest.raises(WeightsError, match="cannot rebuild"):
        load_model(path)


def test_shape_mismatch(tmp_path: Path) -> None:
    model = _trained_like()
    model.config = create_model("rnon-repair", width=0.25, depth=4).config  # lie about it
    path = save_weights(model, tmp_path / "g.safetensors")
    with pytest.raises(WeightsError, match=r"tensor '.+' has shape \(\d+.*the model expects"):
        load_model(path)


def test_missing_tensor(tmp_path: Path) -> None:
    good = save_weights(_trained_like(), tmp_path / "g.safetensors")
    from safetensors import safe_open

    with safe_open(str(good), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys() if k != "head.bias"}
    path = tmp_path / "x.safetensors"
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(WeightsError, match="head.bias"):
        load_model(path)


def test_save_needs_a_registry_model(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="create_model"):
        save_weights(torch.nn.Linear(2, 2), tmp_path / "x.safetensors")


def _engine_sources() -> list[Path]:
    files = [p for d in ("src", "training") for p in (ROOT / d).rglob("*.py")]
    assert files
    return files


def _call_text(text: str, start: int) -> str:
    """The text of the call starting at ``start``, up to its matching parenthesis."""
    depth = 0
    for i in range(text.index("(", start), len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start : i + 1]
    return text[start:]


def _unpickling_offenders(name: str, text: str) -> list[str]:
    """The rule: torch.load without weights_only=True, pickle-family imports, unpickling."""
    offenders = []
    for m in re.finditer(r"torch\.load\(", text):
        call = _call_text(text, m.start())
        if "weights_only=True" not in call:
            offenders.append(f"{name}: {call}")
    for m in re.finditer(r"^\s*(import|from)\s+(c?pickle|dill|joblib)\b", text, re.M):
        offenders.append(f"{name}: {m.group(0).strip()}")
    if re.search(r"\b(pickle|dill)\.loads?\(", text) or "allow_pickle=True" in text:
        offenders.append(f"{name}: unpickling call")
    return offenders


def test_no_code_path_unpickles() -> None:
    offenders = []
    for path in _engine_sources():
        offenders += _unpickling_offenders(str(path.relative_to(ROOT)), path.read_text())
    assert not offenders, offenders


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("x = torch.load(str(p), map_location='cpu')", "torch.load(str(p), map_location='cpu')"),
        ("x = torch.load(\n    p,\n    map_location=dev,\n)", "map_location=dev"),
        ("import pickle", "import pickle"),
        ("    from dill import loads", "from dill"),
        ("import joblib", "import joblib"),
        ("obj = pickle.loads(blob)", "unpickling call"),
        ("a = np.load(f, allow_pickle=True)", "unpickling call"),
    ],
)
def test_the_unpickling_check_catches_offenders(source: str, found: str) -> None:
    offenders = _unpickling_offenders("bad.py", source)
    assert len(offenders) == 1 and found in offenders[0], offenders


def test_the_unpickling_check_passes_safe_code() -> None:
    safe = (
        "y = torch.load(p, weights_only=True)\n"
        "z = torch.load(\n    q, map_location='cpu', weights_only=True\n)\n"
        "import pickletools_like  # another module whose name starts with pickle\n"
    )
    assert _unpickling_offenders("ok.py", safe) == []
