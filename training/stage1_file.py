"""The trained stage-1 file and the output file that ``training.prune`` and ``training.widen`` take.

Both commands read a repair generator (``'default'``, the packaged one, or a path) and write
a new one; they refuse the same wrong inputs with the same messages, here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rnon_engine.errors import RnonError

if TYPE_CHECKING:
    from rnon_engine.nn.networks.repair import RepairGenerator


def load_stage1(weights: str) -> tuple[Path, RepairGenerator]:
    """The file ``--weights`` names and the repair generator it holds.

    Raises:
        RnonError: No such file, or not a stage-1 (repair) generator.
    """
    from rnon_engine.nn.networks.repair import RepairGenerator
    from rnon_engine.nn.weights import load_model
    from rnon_engine.pretrained import default_paths

    path = default_paths()[0] if weights == "default" else Path(weights)
    if not path.is_file():
        raise RnonError(f"--weights: no weights file at {path}; give 'default' or a path")
    model = load_model(path)
    if not isinstance(model, RepairGenerator):
        raise RnonError(f"--weights: {path} is not a stage-1 (repair) generator")
    return path, model


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that is not a ``.safetensors`` file name.

    Raises:
        RnonError: The name does not end in ``.safetensors``.
    """
    if out.suffix != ".safetensors":
        raise RnonError(f"--out must end in .safetensors, got {out}")
