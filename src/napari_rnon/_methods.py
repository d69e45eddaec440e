"""The Inpaint widget's methods and weights: names, result tags, devices, engine loading.

No Qt and no torch at import (torch is imported by :func:`available_devices` and the engine
by :func:`load_inpainter`, both called off the GUI thread).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from napari_rnon._settings import EngineSettings

__all__ = [
    "AUTO",
    "AUTO_METHOD",
    "CLASSICAL_TAGS",
    "METHODS",
    "PACKAGED",
    "RNON_METHODS",
    "available_devices",
    "describe_stage2",
    "load_inpainter",
    "result_tag",
    "user_weights",
]

# Method label -> (engine name, stages). "default" means the packaged RNON weights; "auto"
# sends each hole group to the method measured best for its kind (packaged network +
# classical methods), the default, as in rnon-batch.
AUTO = "auto"
AUTO_METHOD = "Auto (best method for each hole)"
METHODS: dict[str, tuple[str, str]] = {
    AUTO_METHOD: (AUTO, "both"),
    "RNON (repair + optimise)": ("default", "both"),
    "RNON repair only": ("default", "repair"),
    "Telea (OpenCV)": ("telea", "repair"),
    "Navier-Stokes (OpenCV)": ("ns", "repair"),
    "Biharmonic (scikit-image)": ("biharmonic", "repair"),
}
RNON_METHODS = ("RNON (repair + optimise)", "RNON repair only")
CLASSICAL_TAGS = {"telea": "telea", "ns": "navier-stokes", "biharmonic": "biharmonic"}
PACKAGED = "default"


def user_weights() -> list[tuple[str, str]]:
    """Weights in the user weights folder (fine-tuned models), newest first."""
    from rnon_engine.train.finetune import list_user_weights

    return [(p.stem, str(p)) for p in list_user_weights()]


def result_tag(settings: EngineSettings) -> str:
    """What made a result, for its layer name: ``"auto"``, ``"telea"``, ``"RNON cells"``..."""
    name = settings.name_or_path
    if name == AUTO:
        return AUTO
    if name in CLASSICAL_TAGS:
        return CLASSICAL_TAGS[name]
    tag = "RNON" if name == PACKAGED else f"RNON {Path(name).stem}"
    if settings.stage2:
        tag += f" + {Path(settings.stage2).stem}"
    if settings.stages == "repair":
        tag += " stage 1"
    return tag


def available_devices() -> list[str]:
    """Devices torch can use here: ``auto``, ``cpu``, then each CUDA device, then ``mps``."""
    import torch

    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def load_inpainter(settings: EngineSettings) -> Any:
    """Build the engine's Inpainter for ``settings`` (runs in the worker thread)."""
    from rnon_engine.inference.inpainter import Inpainter

    return Inpainter.from_pretrained(
        name_or_path=settings.name_or_path,
        device=settings.device,
        stage2=settings.stage2,
        tile_size=settings.tile_size,
    )


def describe_stage2(settings: EngineSettings) -> str:
    """Which stage-2 (optimise) weights a repair + optimise run with ``settings`` uses.

    Reads the weights file's metadata (no network is built); the answer is cached per
    file and modification time.
    """
    if settings.stage2:
        return f"Stage 2: {Path(settings.stage2).name} (Advanced settings)."
    if settings.name_or_path == PACKAGED:
        return "Stage 2: the packaged optimise model."
    path = Path(settings.name_or_path)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return f"Weights file not found: {path}."
    return _describe_file(str(path), mtime)


@functools.lru_cache(maxsize=64)
def _describe_file(path_text: str, mtime_ns: int) -> str:
    from rnon_engine.errors import RnonError
    from rnon_engine.inference.weights_source import resolve_weights

    path = Path(path_text)
    try:
        src = resolve_weights(path)
    except RnonError as exc:
        return f"These weights cannot be used: {exc}"
    if src.optimize is not None:
        return f"Stage 2: {Path(src.optimize).name}, named by {path.name}."
    return (
        f"Stage 2: none. {path.name} holds stage 1 only and names no stage-2 file, so only "
        "the repair stage runs. To optimise too, choose Stage-2 weights under Advanced "
        "settings."
    )
