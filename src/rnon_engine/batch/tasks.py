"""The task functions of ``rnon-batch``: one block of a stack, or one image file.

The same functions run in a thread of this process, on a ``LocalCluster`` worker or on a
worker of an existing scheduler. A task gets small picklable descriptions (a job and its
unit), opens what it reads and writes itself, and gets its inpainter from the per-process
cache (:func:`rnon_engine.batch.models.get_inpainter`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnon_engine.batch.context import inpaint_context
from rnon_engine.batch.estimates import plane_estimate, save_block
from rnon_engine.batch.io import (
    ArrayRef,
    ImageInfo,
    block_in_order,
    describe_image_file,
    open_array,
    read_image_file,
    write_image_file,
)
from rnon_engine.batch.masks import MaskInfo, image_file_mask, mask_window
from rnon_engine.batch.models import InpainterSpec, get_inpainter
from rnon_engine.batch.plan import Block, plane_label
from rnon_engine.batch.regions import read_region
from rnon_engine.errors import Cancelled, InputError

__all__ = [
    "STOP",
    "TEST_DELAY_ENV",
    "BlockJob",
    "FileJob",
    "inpaint_array",
    "load_image_file",
    "process_block",
    "process_file",
    "read_window",
]

TEST_DELAY_ENV = "RNON_BATCH_TEST_DELAY"
"""Test hook: seconds every task sleeps before its work (used by the kill-and-resume test)."""

STOP = threading.Event()
"""Set by the executor to stop the tasks of this process (Ctrl-C); checked between planes."""


@dataclass(frozen=True)
class BlockJob:
    """What every block task needs (small and picklable)."""

    image: ImageInfo
    mask: MaskInfo
    out: ArrayRef
    state: str
    model: InpainterSpec
    stages: str
    estimate: bool = False
    context: tuple[int, int] | None = None  # (stack axis, K): --context-planes


@dataclass(frozen=True)
class FileJob:
    """What every file task needs (folder and single-image modes)."""

    axes: str | None
    model: InpainterSpec
    stages: str
    mask_value: float | None
    description: dict[str, Any]
    estimates: str | None = None  # --estimate-error: the run's state folder (figures)


def _delay() -> None:
    d = os.environ.get(TEST_DELAY_ENV)
    if d:
        time.sleep(float(d))


def inpaint_array(
    inp: Any,
    image: ImageInfo,
    data: np.ndarray,
    m: np.ndarray,
    stages: str,
    inner: tuple[slice, ...] | None = None,
    origin: tuple[int, ...] | None = None,
    estimates: list[tuple[str, float, int]] | None = None,
) -> tuple[np.ndarray, int]:
    """Inpaint every plane of ``data`` with holes inside ``inner`` (default: all of it).

    Args:
        inp: The inpainter.
        image: INPUT's description (axes, colour axis).
        data: INPUT's values in a window.
        m: The window's boolean mask (INPUT's dimensions, broadcastable).
        stages: ``"both"`` or ``"repair"``.
        inner: The part of the window to return (default: all of it).
        origin: The window's first index in INPUT, to name a plane the engine refuses.
        estimates: When given, each inpainted plane's error estimate is appended as
            ``(plane, rmse, hole pixels inside inner)`` (``--estimate-error``).

    Returns:
        ``data[inner]`` repaired, and the number of planes inpainted.

    Raises:
        InputError: the engine refuses a plane; the message names INPUT and the plane.
    """
    nd = data.ndim
    if inner is None:
        inner = tuple(slice(None) for _ in data.shape)
    c = image.color_axis
    lead, order = image.lead_axes, image.plane_order
    layout = image.layout_of(data.shape)
    dt, mt, it, out = block_in_order(data, m, inner, order, c)
    n = 0
    start = origin or (0,) * nd
    channel_axis = layout.plane_channel_axis
    for idx in layout.planes:
        plane_mask = mt[idx]
        holes = int(np.count_nonzero(plane_mask[it[len(lead)], it[len(lead) + 1]]))
        if not holes:
            continue
        at = tuple(start[d] + i for d, i in zip(lead, idx, strict=True))
        try:
            out[idx] = inp.inpaint(
                dt[idx],
                plane_mask,
                stages=stages,
                channel_axis=channel_axis,
                cancel=STOP.is_set,
            )
            if estimates is not None:
                rmse = plane_estimate(
                    inp,
                    dt[idx],
                    plane_mask,
                    stages=stages,
                    channel_axis=channel_axis,
                    cancel=STOP.is_set,
                )
                estimates.append((plane_label(image, at), rmse, holes))
        except InputError as exc:
            raise InputError(f"{image.path}: {plane_label(image, at)}: {exc}.") from exc
        n += 1
    result = out[it]
    return np.transpose(result, np.argsort(order)), n


def read_window(
    image: ImageInfo, mask: MaskInfo, window: tuple[slice, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """INPUT's values in ``window`` and the boolean repair mask there (see mask_window)."""
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(open_array(image.ref))
        marr = stack.enter_context(open_array(mask.ref)) if mask.ref is not None else None
        data = read_region(src, image.ref, window, "INPUT")
        return data, mask_window(mask, image, window, marr, data)


def process_block(job: BlockJob, block: Block) -> dict[str, Any]:
    """Compute (or copy) one block and record it as done. Runs in any worker."""
    _delay()
    if STOP.is_set():
        raise Cancelled("stopped")
    t0 = time.perf_counter()
    image = job.image
    region = block.slices()
    computed = 0
    rows: list[tuple[str, float, int]] | None = [] if job.estimate else None
    if block.holes == 0:
        with open_array(image.ref) as src:
            result = read_region(src, image.ref, region, "INPUT")
    else:
        data, m = read_window(image, job.mask, block.slices("window"))
        inner = tuple(
            slice(a - w0, b - w0)
            for (a, b), (w0, _) in zip(block.region, block.window, strict=False)
        )
        m_inner = m[tuple(s if m.shape[d] > 1 else slice(None) for d, s in enumerate(inner))]
        if not m_inner.any():
            result = data[inner]
        else:
            inp = get_inpainter(job.model)
            origin = tuple(w0 for w0, _ in block.window)
            if job.context is not None:  # neighbouring planes first (batch/context.py)
                sa, k = job.context
                result, computed = inpaint_context(
                    inp, image, data, m, job.stages, inner, sa, k, cancel=STOP.is_set
                )
            else:
                result, computed = inpaint_array(
                    inp, image, data, m, job.stages, inner, origin, estimates=rows
                )
    with open_array(job.out, "r+") as out:
        out[region] = result
    if rows is not None:  # before the marker: a resumed run keeps a done block's figures
        save_block(job.state, block.index, rows)
    (Path(job.state) / "done" / str(block.index)).touch()
    return {"index": block.index, "planes": computed, "seconds": time.perf_counter() - t0}


def _read_file(path: str, what: str) -> np.ndarray:
    try:
        return read_image_file(path)
    except Exception as exc:
        raise InputError(
            f"cannot read {what} file {path!r}: it is damaged or truncated "
            f"({type(exc).__name__}: {exc}). Replace it and run the same command again."
        ) from exc


def load_image_file(
    src: str, mpath: str | None, axes: str | None, mask_value: float | None
) -> tuple[np.ndarray, ImageInfo, np.ndarray]:
    """An image file, its description and its boolean mask (from ``mpath`` or the value)."""
    data = _read_file(src, "image")
    info = describe_image_file(src, data.shape, data.dtype, axes)
    mask = _read_file(mpath, "mask") if mpath is not None else None
    return data, info, image_file_mask(info, mask, mpath, mask_value, data)


def process_file(job: FileJob, pair: tuple[str, str | None, str]) -> dict[str, Any]:
    """Repair one image file into its output file (written atomically)."""
    _delay()
    if STOP.is_set():
        raise Cancelled("stopped")
    t0 = time.perf_counter()
    src, mpath, dst = pair
    data, info, m = load_image_file(src, mpath, job.axes, job.mask_value)
    computed = 0
    rows: list[tuple[str, float, int]] | None = [] if job.estimates else None
    if m.any():
        data, computed = inpaint_array(
            get_inpainter(job.model), info, data, m, job.stages, estimates=rows
        )
    if job.estimates and rows is not None:  # before the file: resume skips written files
        save_block(job.estimates, Path(dst).name, rows)
    write_image_file(dst, data, color=info.color_axis is not None, description=job.description)
    return {"index": dst, "planes": computed, "seconds": time.perf_counter() - t0}
