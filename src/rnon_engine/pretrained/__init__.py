"""The packaged default weights and how to find them.

``default_repair.safetensors`` (stage 1) and ``default_optimize.safetensors`` (stage 2)
live in this directory and are installed with the wheel. Until the default model is
trained they are an **untrained placeholder** (random initialisation, small: repair
width 0.25 / depth 8, optimize width 1.0; metadata ``placeholder=true``):
``Inpainter.from_pretrained("default")`` warns with ``PlaceholderWeightsWarning`` whenever
the metadata says so. Replace them with trained generators of the same file names
(written by ``rnon_engine.save_weights``) and drop ``placeholder``.
"""

from __future__ import annotations

from pathlib import Path

from rnon_engine.errors import WeightsError

__all__ = ["DIRECTORY", "REPAIR_FILE", "OPTIMIZE_FILE", "default_paths", "write_placeholders"]

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


def write_placeholders(directory: str | Path = DIRECTORY, seed: int = 0) -> tuple[Path, Path]:
    """Write the untrained placeholder generators (float16, seeded) into ``directory``.

    Run ``python -c "from rnon_engine.pretrained import write_placeholders as w; w()"``
    to regenerate them.
    """
    import torch

    from rnon_engine.registry import create_model
    from rnon_engine.weights import save_weights

    torch.manual_seed(seed)
    directory = Path(directory)
    note = (
        f"UNTRAINED PLACEHOLDER (random initialisation, seed {seed}): shipped until the "
        "default model is trained; results are not meaningful"
    )
    repair = create_model("rnon-repair", width=0.25, depth=8)
    optimize = create_model("rnon-optimize", width=1.0)
    rp = save_weights(
        repair,
        directory / REPAIR_FILE,
        dtype=torch.float16,
        placeholder=True,
        description=note,
        stage2_file=OPTIMIZE_FILE,
    )
    op = save_weights(
        optimize, directory / OPTIMIZE_FILE, dtype=torch.float16, placeholder=True, description=note
    )
    return rp, op
