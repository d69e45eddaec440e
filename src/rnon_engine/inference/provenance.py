"""What an inpainter is made of, found without building it (and without importing torch).

:func:`describe` gives the provenance that :meth:`Inpainter.from_pretrained(...).provenance
<rnon_engine.inference.Inpainter.from_pretrained>` records (method, weights paths and
SHA-256, stages, settings, package version) from the weights files' metadata alone, and
refuses missing, corrupt or foreign files with the same errors. ``rnon-batch`` uses it in
its driver process, which records the provenance but never runs a network; the
:class:`~rnon_engine.inference.Inpainter` builds its own provenance with the same
functions, so the two cannot drift.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnon_engine.errors import InputError, WeightsError
from rnon_engine.inference.classical import CLASSICAL_METHODS
from rnon_engine.inference.classical import CONTEXT as CLASSICAL_CONTEXT

__all__ = [
    "NET_CONTEXT",
    "NET_WINDOW_COST",
    "NET_WINDOW_MULTIPLE",
    "STAGE2_META_KEY",
    "WeightsSource",
    "build_provenance",
    "check_settings",
    "default_margin",
    "describe",
    "resolve_weights",
]

#: Repair-file metadata entry naming its stage-2 file (a file name next to it).
STAGE2_META_KEY = "stage2_file"
TRAINER_REPAIR_NAME = "repair_generator.safetensors"
TRAINER_OPTIMIZE_NAME = "optimize_generator.safetensors"
#: Networks: valid context (px) kept around small holes, on every side of their box.
NET_CONTEXT = 24
#: Networks: small-hole windows are rounded up to a multiple of this and computed at that
#: size (``pad_to``), not padded to the U-Net's ``2**depth``.
NET_WINDOW_MULTIPLE = 16
#: Networks: the fixed cost of one more small window, in px² (holes share a window when
#: that costs less than this plus the area it adds).
NET_WINDOW_COST = 32 * 32
REGIONS = ("band", "image")
INTENSITY = "uint8: v/255; others: 0.1-99.9 percentile of valid pixels per plane"


@dataclass(frozen=True)
class WeightsSource:
    """What a name or path given to ``from_pretrained`` stands for.

    Attributes:
        name: As given (``"default"``, a path, ``"telea"``...).
        method: ``"rnon"`` or the classical method's name.
        repair: The repair-generator file (None for a classical method).
        optimize: The optimize-generator file, if stage 2 runs.
        sha256: SHA-256 of each file, keyed ``"repair"`` / ``"optimize"``.
    """

    name: str
    method: str
    repair: Path | None = None
    optimize: Path | None = None
    sha256: dict[str, str] = field(default_factory=dict)

    @property
    def stages(self) -> list[str]:
        """The stages that run: ``["repair", "optimize"]``, ``["repair"]`` or the method."""
        if self.method != "rnon":
            return [self.method]
        return ["repair", "optimize"] if self.optimize is not None else ["repair"]

    def files(self) -> dict[str, Any]:
        """The ``weights`` and ``sha256`` provenance entries (empty for classical methods)."""
        if self.repair is None:
            return {}
        weights = {"repair": str(self.repair)}
        if self.optimize is not None:
            weights["optimize"] = str(self.optimize)
        return {"weights": weights, "sha256": dict(self.sha256)}


def check_settings(tile_size: Any, stage2_region: Any) -> None:
    """Refuse a bad tile size or stage-2 region.

    Raises:
        InputError: ``tile_size`` is not an integer >= 16 or ``stage2_region`` is unknown.
    """
    if stage2_region not in REGIONS:
        raise InputError(f"stage2_region must be one of {REGIONS}, got {stage2_region!r}")
    if not isinstance(tile_size, int) or tile_size < 16:
        raise InputError(f"tile_size must be an integer >= 16, got {tile_size!r}")


def default_margin(network: bool, tile_size: int) -> int:
    """The default context margin, kept below half the tile.

    :data:`NET_CONTEXT` for the networks, :data:`rnon_engine.inference.classical.CONTEXT` for the
    classical methods.
    """
    margin = NET_CONTEXT if network else CLASSICAL_CONTEXT
    return min(margin, (tile_size - 1) // 2)


def build_provenance(
    method: str,
    name: str,
    stages: list[str],
    *,
    stage2_region: str,
    tile_size: int,
    context: int,
    window_multiple: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The provenance dict of an inpainter (what outputs record), ``extra`` merged last."""
    from rnon_engine import __version__

    prov: dict[str, Any] = {
        "method": method,
        "name": name,
        "package_version": __version__,
        "stages": list(stages),
        "stage2_region": stage2_region,
        "tile_size": tile_size,
        "context": context,
        "window_multiple": window_multiple,
        "intensity": INTENSITY,
    }
    prov.update(extra or {})
    return prov


def resolve_weights(
    name_or_path: str | os.PathLike, stage2: str | os.PathLike | None = None
) -> WeightsSource:
    """Find and check the files that ``from_pretrained(name_or_path, stage2=...)`` loads.

    Only the files' safetensors metadata is read (and the files hashed); no network is
    built. See :meth:`~rnon_engine.inference.Inpainter.from_pretrained` for how the
    stage-2 file is found.

    Raises:
        InputError: An unknown method name.
        WeightsError: A weights file is missing, corrupt, truncated, foreign or holds
            another model than the one expected.
    """
    from rnon_engine.nn.weights import file_sha256, read_metadata

    text = os.fspath(name_or_path)
    if text in CLASSICAL_METHODS:
        return WeightsSource(text, text)
    if text.lower().endswith(".onnx"):  # an export (rnon_engine.export); read by ONNX Runtime
        from rnon_engine.inference.onnx_model import resolve_onnx

        repair, optimize = resolve_onnx(text, stage2)
        sha = {"repair": file_sha256(repair)}
        if optimize is not None:
            sha["optimize"] = file_sha256(optimize)
        return WeightsSource(text, "rnon", repair, optimize, sha)
    if text == "default":
        from rnon_engine.pretrained import default_paths

        path, default_stage2 = default_paths()
        stage2 = default_stage2 if stage2 is None else stage2
    else:
        path = Path(text)
        if not path.exists() and path.suffix == "" and os.sep not in text and "/" not in text:
            raise InputError(
                f"unknown method {text!r}; choose one of {['default', *CLASSICAL_METHODS]} or "
                "give the path of a repair-generator .safetensors file"
            )
    meta = read_metadata(path)
    if meta["model_name"] != "rnon-repair":
        raise WeightsError(
            f"{path} holds a {meta['model_name']!r} model; from_pretrained needs the "
            "repair generator ('rnon-repair') first (pass the optimize file as stage2=)"
        )
    if stage2 is None and meta.get(STAGE2_META_KEY):
        stage2 = path.parent / str(meta[STAGE2_META_KEY])
        if not stage2.is_file():
            raise WeightsError(
                f"{path} names its stage-2 file {meta[STAGE2_META_KEY]!r} but {stage2} does "
                "not exist; copy it next to the repair file or pass stage2= explicitly"
            )
    if stage2 is None:
        stage2 = _trainer_sibling(path)
    sha = {"repair": file_sha256(path)}
    if stage2 is not None:
        stage2 = Path(stage2)
        name2 = read_metadata(stage2)["model_name"]
        if name2 != "rnon-optimize":
            raise WeightsError(
                f"stage-2 file {stage2} holds a {name2!r} model, not 'rnon-optimize'"
            )
        sha["optimize"] = file_sha256(stage2)
    return WeightsSource(text, "rnon", path, stage2, sha)


def describe(
    name_or_path: str | os.PathLike = "default",
    *,
    stage2: str | os.PathLike | None = None,
    tile_size: int = 512,
    stage2_region: str = "band",
    margin: int | None = None,
    window_multiple: int | None = None,
) -> dict[str, Any]:
    """``Inpainter.from_pretrained(name_or_path, ...).provenance``, without loading anything.

    Takes the arguments of :meth:`~rnon_engine.inference.Inpainter.from_pretrained` that
    the provenance depends on, reads only the weights files' metadata (and hashes them),
    and never imports torch.

    Returns:
        The same dict as the inpainter's :attr:`~rnon_engine.inference.Inpainter.provenance`.

    Raises:
        InputError: Unknown method name, bad ``tile_size`` or ``stage2_region``.
        WeightsError: A weights file is missing, corrupt, foreign or of the wrong model.
    """
    check_settings(tile_size, stage2_region)
    if os.fspath(name_or_path) == "auto":  # each hole group to its best method
        from rnon_engine.inference.routing import describe_auto

        return describe_auto(stage2=stage2, tile_size=tile_size, stage2_region=stage2_region)
    src = resolve_weights(name_or_path, stage2)
    return build_provenance(
        src.method,
        src.name,
        src.stages,
        stage2_region=stage2_region,
        tile_size=tile_size,
        context=default_margin(src.method == "rnon", tile_size) if margin is None else margin,
        window_multiple=window_multiple or (NET_WINDOW_MULTIPLE if src.method == "rnon" else 1),
        extra=src.files(),
    )


def _trainer_sibling(repair_path: Path) -> Path | None:
    """The trainer's stage-2 export beside its stage-1 export, if it was trained on it."""
    from rnon_engine.nn.weights import read_metadata

    if repair_path.name != TRAINER_REPAIR_NAME:
        return None
    candidate = repair_path.parent / TRAINER_OPTIMIZE_NAME
    if not candidate.is_file():
        return None
    named = read_metadata(candidate).get("repair_weights")
    if named and Path(named).resolve() != repair_path.resolve():
        return None
    return candidate
