"""The packaged default weights and how to find them.

``default_repair.safetensors`` (stage 1) and ``default_optimize.safetensors`` (stage 2)
live in this directory and are installed with the wheel. They are the default model
described in ``docs/model_card.md``, written by ``python -m training.package_default``
from a training run (float16 safetensors; they load as float32).
"""

from __future__ import annotations

from pathlib import Path

from rnon_engine.errors import WeightsError

__all__ = ["DIRECTORY", "REPAIR_FILE", "OPTIMIZE_FILE", "default_paths"]

DIRECTORY = Path(__file__).resolve().parent
REPAIR_FILE = "default_repair.safetensors"
OPTIMIZE_FILE = "default_optimize.safetensors"


def default_paths() -> tuple[Path, Path]:
    """Paths of the packaged repair and optimize generators.

    Raises:
        WeightsError: A packaged file is missing (a broken installation).
    """
    repair, optimize = DIRECTORY / REPAIR_FILE, DIRECTORY / OPTIMIZE_FILE
    for path in (repair, optimize):
        if not path.is_file():
            raise WeightsError(
                f"the packaged weights file {path} is missing; reinstall napari-rnon or pass "
                "the path of a weights file instead of 'default'"
            )
    return repair, optimize
