"""``rnon-batch --estimate-error``: each plane's expected error, in the output's attributes.

A block task estimates every plane it inpaints right after repairing it
(:func:`plane_estimate`: :func:`rnon_engine.inference.estimate.estimate_error`, the same
method repairing known pixels hidden in the holes' shapes, seeded) and saves the figures
in the run's state folder (:func:`save_block`) before it marks the block done, so an
interrupted run resumes with the estimates of the blocks already done. When the run
finishes, :func:`collect` pools them per plane into the ``error_estimate`` entry of the
output's ``rnon_batch`` attributes (kept there per block too, so that a run redoing only
the blocks whose mask changed keeps the others' figures; image files are recorded the same
way, one file of figures per image, see :func:`collect_files`). A plane cut into YX blocks gets
the RMSE pooled over its blocks, weighted by their hole pixels; each block's estimate
sees the holes of its window (block + halo).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ESTIMATE_DIR", "SEED", "collect", "collect_files", "plane_estimate", "save_block"]

ESTIMATE_DIR = "estimates"
"""Folder of the per-block estimate files inside the run's state folder."""
SEED = 0
"""Seed of the probes' placement: the same command gives the same figures."""


def plane_estimate(
    inp: Any,
    plane: np.ndarray,
    mask: np.ndarray,
    *,
    stages: str,
    channel_axis: int | None,
    cancel: Any = None,
) -> float:
    """The expected RMSE of ``inp``'s repair of one plane, in INPUT's values."""
    from rnon_engine.inference.estimate import estimate_error

    return float(
        estimate_error(
            inp, plane, mask, seed=SEED, stages=stages, channel_axis=channel_axis, cancel=cancel
        )
    )


def _file(state: str | Path, index: Any) -> Path:
    return Path(state) / ESTIMATE_DIR / f"{index}.json"


def save_block(state: str | Path, index: Any, rows: list[tuple[str, float, int]]) -> None:
    """Record block ``index``'s ``(plane, rmse, hole pixels)`` rows (atomically).

    A block with no row (nothing inpainted, e.g. its mask was cleared) has its old file
    removed.
    """
    path = _file(state, index)
    if not rows:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps([[p, float(r), int(n)] for p, r, n in rows]))
    os.replace(tmp, path)


def collect(
    state: str | Path, blocks: list[str], existing: dict[str, Any] | None
) -> dict[str, Any]:
    """The ``error_estimate`` attribute of a finished run.

    Args:
        state: The run's state folder.
        blocks: The indices (as text) of the blocks with holes.
        existing: The output's earlier ``error_estimate`` attribute (same command, when
            only the blocks whose mask changed were redone), for blocks with no file.

    Returns:
        ``rmse`` (all planes pooled), ``planes`` (plane -> RMSE), ``hole_pixels`` (plane ->
        pixels), ``units``, ``seed`` and ``by_block`` (block -> rows).
    """
    earlier = (existing or {}).get("by_block", {})
    by_block: dict[str, list[list[Any]]] = {}
    for index in blocks:
        path = _file(state, index)
        if path.is_file():
            by_block[index] = json.loads(path.read_text())
        elif index in earlier:
            by_block[index] = earlier[index]
    sse: dict[str, float] = {}
    holes: dict[str, int] = {}
    for rows in by_block.values():
        for plane, rmse, n in rows:
            sse[plane] = sse.get(plane, 0.0) + rmse * rmse * n
            holes[plane] = holes.get(plane, 0) + n
    planes = {p: math.sqrt(sse[p] / holes[p]) for p in sse if holes[p]}
    total = sum(holes.values())
    return {
        "rmse": math.sqrt(sum(sse.values()) / total) if total else None,
        "units": "INPUT's values (root-mean-square error of the repaired pixels)",
        "seed": SEED,
        "planes": planes,
        "hole_pixels": {p: holes[p] for p in planes},
        "by_block": by_block,
    }


def collect_files(state: str | Path, names: list[str]) -> dict[str, Any]:
    """The ``error_estimate`` attribute of a finished folder or image-file run.

    Args:
        state: The run's state folder (the figures were saved with ``index`` = file name).
        names: The output file names, in order.

    Returns:
        ``rmse`` (every plane of every file pooled by hole pixels), ``units``, ``seed`` and
        ``files``: file name -> ``rmse``, ``planes`` and ``hole_pixels`` (files with holes).
    """
    files: dict[str, Any] = {}
    sse = 0.0
    total = 0
    for name in names:
        one = collect(state, [name], None)
        if not one["planes"]:
            continue
        files[name] = {k: one[k] for k in ("rmse", "planes", "hole_pixels")}
        n = sum(one["hole_pixels"].values())
        sse += one["rmse"] ** 2 * n
        total += n
    return {
        "rmse": math.sqrt(sse / total) if total else None,
        "units": "INPUT's values (root-mean-square error of the repaired pixels)",
        "seed": SEED,
        "files": files,
    }
