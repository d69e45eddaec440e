"""The weights format: safetensors with the model's name and config in its metadata.

A weights file is self-describing: :func:`load_model` rebuilds the network from the
metadata alone. Nothing here unpickles anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnon_engine.errors import WeightsError

if TYPE_CHECKING:  # torch is imported where it is used: read_metadata works without it
    import torch
    from torch import nn

__all__ = [
    "EXPORT_NAMES",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "save_weights",
    "load_model",
    "read_metadata",
    "file_sha256",
]

FORMAT_NAME = "napari-rnon-weights"
FORMAT_VERSION = "1"
#: File names of a training run's exported generators (``<run>/weights/<name>``), by stage.
#: ``from_pretrained`` pairs a stage-1 export with the stage-2 export beside it.
EXPORT_NAMES = {
    "repair": "repair_generator.safetensors",
    "optimize": "optimize_generator.safetensors",
}
_RESERVED = {"format", "format_version", "model_name", "config"}


def save_weights(
    model: nn.Module, path: str | os.PathLike, *, dtype: torch.dtype | None = None, **metadata: Any
) -> Path:
    """Write ``model``'s state dict and config to a safetensors file, atomically.

    Args:
        model: A module made by :func:`rnon_engine.create_model` (it has ``model_name`` and
            ``config``).
        path: Destination file (``.safetensors``).
        dtype: Store floating-point tensors in this dtype (e.g. ``torch.float16`` to halve
            the file); :func:`load_model` casts back to float32.
        **metadata: Extra JSON-serialisable values stored in the file's metadata (for
            example ``step=1000``, ``trained_on="..."``).

    Returns:
        The path written.
    """
    from safetensors.torch import save_file

    name = getattr(model, "model_name", None)
    config = getattr(model, "config", None)
    if name is None or not dataclasses.is_dataclass(config):
        raise TypeError("save_weights needs a model made by rnon_engine.create_model")
    clash = _RESERVED & set(metadata)
    if clash:
        raise ValueError(f"metadata keys {sorted(clash)} are reserved")
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_name": name,
        "config": json.dumps(dataclasses.asdict(config)),
    }
    meta.update({k: json.dumps(v) for k, v in metadata.items()})
    tensors = {}
    for key, t in model.state_dict().items():
        t = t.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[key] = t.contiguous()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600: give the usual file mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a weights file's metadata without loading its tensors.

    Returns:
        A dict with ``model_name`` (str), ``config`` (dict), ``format_version`` (str) and
        any extra metadata, JSON-decoded.

    Raises:
        WeightsError: The file is missing, not safetensors, or not a napari-rnon file.
    """
    from safetensors import safe_open

    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.safetensors"))
        holds = f"it holds {', '.join(found)}" if found else "it holds no .safetensors file"
        raise WeightsError(
            f"{path} is a folder, not a weights file ({holds}); give the path of the "
            ".safetensors file itself (a training run keeps them in its weights/ folder)"
        )
    if not path.is_file():
        raise WeightsError(
            f"weights file not found: {path}. Give the path of a .safetensors file written "
            "by rnon_engine.save_weights or python -m training.run"
        )
    try:
        with safe_open(str(path), framework="numpy") as f:
            raw = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise WeightsError(
            f"{path} is not a readable safetensors file ({exc}); it may be corrupt or "
            "truncated: copy it again or re-export it"
        ) from None
    if raw.get("format") != FORMAT_NAME:
        raise WeightsError(
            f"{path} is a safetensors file but not napari-rnon weights (no "
            f"'format: {FORMAT_NAME}' in its metadata); export weights with "
            "rnon_engine.save_weights"
        )
    if raw.get("format_version") != FORMAT_VERSION:
        raise WeightsError(
            f"{path} has weights format version {raw.get('format_version')!r}; this version "
            f"of napari-rnon reads version {FORMAT_VERSION}"
        )
    if not raw.get("model_name"):
        raise WeightsError(f"{path}: metadata has no model name; re-export the weights")
    out: dict[str, Any] = {"model_name": raw["model_name"], "format_version": FORMAT_VERSION}
    for key, value in raw.items():
        if key in ("format", "format_version", "model_name"):
            continue
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            raise WeightsError(f"{path}: metadata entry {key!r} is not valid JSON") from None
    if not isinstance(out.get("config"), dict):
        raise WeightsError(f"{path}: metadata has no model config")
    return out


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model from a weights file written by :func:`save_weights`.

    The model is returned in eval mode, in float32, on ``device``; its ``metadata``
    attribute holds the file's metadata and ``weights_sha256`` the file's hash.

    Raises:
        WeightsError: Missing, corrupt, truncated or foreign file, unknown model name, or
            tensors that do not match the model the metadata describes.
    """
    from safetensors.torch import load_file

    from rnon_engine.errors import ConfigError
    from rnon_engine.nn.registry import create_model

    meta = read_metadata(path)
    try:
        model = create_model(meta["model_name"], **meta["config"])
    except (ConfigError, TypeError, ValueError) as exc:
        raise WeightsError(f"{path}: cannot rebuild the model it describes: {exc}") from None
    try:
        tensors = load_file(str(path))
    except Exception as exc:
        raise WeightsError(
            f"{path} could not be read ({exc}); the file is probably truncated or corrupt"
        ) from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise WeightsError(
            f"{path} does not match model {meta['model_name']!r}: missing {missing[:5]}, "
            f"unexpected {extra[:5]}"
        )
    for key, t in tensors.items():
        if t.shape != expected[key].shape:
            raise WeightsError(
                f"{path}: tensor {key!r} has shape {tuple(t.shape)}, the model expects "
                f"{tuple(expected[key].shape)}"
            )
        if t.is_floating_point():
            tensors[key] = t.to(expected[key].dtype)
    model.load_state_dict(tensors)
    model.metadata = meta
    model.weights_sha256 = file_sha256(path)
    return model.to(device).eval()


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file (recorded as provenance by inference and batch runs)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
