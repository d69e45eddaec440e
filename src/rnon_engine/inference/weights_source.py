"""What a name or path given to ``Inpainter.from_pretrained`` stands for, from metadata alone.

:func:`resolve_weights` finds the weights files (the packaged default, a trainer's export
with its stage-2 sibling, a file naming its stage-2 file) and checks their safetensors
metadata without building a network or importing torch, so that ``rnon-batch``'s driver,
:func:`rnon_engine.inference.provenance.describe` and the
:class:`~rnon_engine.inference.Inpainter` find the same files and refuse the same ones.
:func:`list_methods` names what is accepted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnon_engine.errors import InputError, WeightsError
from rnon_engine.inference.classical import CLASSICAL_METHODS
from rnon_engine.nn.weights import EXPORT_NAMES

__all__ = ["STAGE2_META_KEY", "WeightsSource", "list_methods", "resolve_weights"]

#: Repair-file metadata entry naming its stage-2 file (a file name next to it).
STAGE2_META_KEY = "stage2_file"


def list_methods() -> list[str]:
    """Names accepted by :meth:`~rnon_engine.inference.Inpainter.from_pretrained`.

    ``"default"`` is the packaged RNON model; ``"telea"``, ``"ns"`` (OpenCV) and
    ``"biharmonic"`` (scikit-image) are classical methods; ``"auto"`` routes every hole
    group to the method that repairs its kind best (:mod:`rnon_engine.inference.auto`).
    ``"neighbours"`` and ``"stack"`` are for stacks (a Z or T axis; ``context_planes``
    2 by default): the classical neighbour fill (biharmonic where no plane knows a pixel)
    and the learned stack model (the default model where no plane knows a pixel). A path
    to a repair-generator ``.safetensors`` file written by the trainer is accepted as well.
    """
    return ["auto", "default", *CLASSICAL_METHODS, "neighbours", "stack"]


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
                f"unknown method {text!r}; choose one of {list_methods()} or "
                "give the path of a repair-generator .safetensors file"
            )
    meta = read_metadata(path)
    if meta["model_name"] != "rnon-repair":
        raise WeightsError(
            f"{path} holds a {meta['model_name']!r} model; from_pretrained needs the "
            "repair generator ('rnon-repair') first (pass the optimize file as stage2=)"
        )
    if stage2 is None and meta.get(STAGE2_META_KEY):
        stage2 = path.parent / _sibling_name(path, meta[STAGE2_META_KEY])
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


def _trainer_sibling(repair_path: Path) -> Path | None:
    """The trainer's stage-2 export beside its stage-1 export, if it was trained on it."""
    from rnon_engine.nn.weights import read_metadata

    if repair_path.name != EXPORT_NAMES["repair"]:
        return None
    candidate = repair_path.parent / EXPORT_NAMES["optimize"]
    if not candidate.is_file():
        return None
    named = read_metadata(candidate).get("repair_weights")
    if named and Path(named).resolve() != repair_path.resolve():
        return None
    return candidate


def _sibling_name(repair_path: Path, named: Any) -> str:
    """The ``stage2_file`` metadata entry, refused unless it is a plain file name.

    Checked before the file system is touched, so that a weights file cannot probe for
    files elsewhere (an absolute path or ``../``) through the error messages.
    """
    text = named if isinstance(named, str) else ""
    plain = (
        text not in ("", ".", "..")
        and "/" not in text
        and "\\" not in text
        and "\0" not in text
        and not Path(text).is_absolute()
        and Path(text).name == text
    )
    if not plain:
        raise WeightsError(
            f"{repair_path} names its stage-2 file {named!r} in its metadata, but only the "
            "name of a file next to the repair file is allowed (no folder, no absolute "
            "path); pass the stage-2 file as stage2= instead"
        )
    return text
