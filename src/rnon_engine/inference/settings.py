"""The Inpainter's window settings: their defaults for the networks and their checks.

The classical methods' own defaults (:data:`rnon_engine.inference.classical.CONTEXT`,
:data:`~rnon_engine.inference.classical.WINDOW_COST`) live with the methods.
"""

from __future__ import annotations

from typing import Any

from rnon_engine.errors import InputError
from rnon_engine.inference.classical import CONTEXT as CLASSICAL_CONTEXT

__all__ = [
    "NET_CONTEXT",
    "NET_WINDOW_COST",
    "NET_WINDOW_MULTIPLE",
    "REGIONS",
    "STAGE2_HALO",
    "check_settings",
    "default_margin",
]

#: Networks: valid context (px) kept around small holes, on every side of their box.
NET_CONTEXT = 24
#: Networks: small-hole windows are rounded up to a multiple of this and computed at that
#: size (``pad_to``), not padded to the U-Net's ``2**depth``. 8 rather than 16: 10 % fewer
#: stage-1 pixels on issue 16's 400 spots, hole PSNR within 0.05 dB on sparse damage
#: (docs/benchmarks.md, "Inference speed on the CPU").
NET_WINDOW_MULTIPLE = 8
#: Networks: the fixed cost of one more small window, in px² (holes share a window when
#: that costs less than this plus the area it adds).
NET_WINDOW_COST = 32 * 32
#: Band mode: the context (px) stage 2 sees around each group of holes, at most. It was
#: measured to change the hole PSNR of sparse damage by at most 0.001 dB against the full
#: 37 px receptive radius of the second release's stage 2 (docs/benchmarks.md); the
#: default stage 2 since the fifth release sees 10 px, all of which it gets.
STAGE2_HALO = 16
#: Where stage 2 runs: a band around the holes (composited) or the whole image (the paper).
REGIONS = ("band", "image")


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

    :data:`NET_CONTEXT` for the networks, :data:`rnon_engine.inference.classical.CONTEXT`
    for the classical methods.
    """
    margin = NET_CONTEXT if network else CLASSICAL_CONTEXT
    return min(margin, (tile_size - 1) // 2)
