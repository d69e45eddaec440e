"""The entry point of ``rnon-batch`` for Python callers: :func:`run_batch`.

The driver (this process) checks the options and paths, then hands a stack INPUT (zarr,
OME-Zarr, TIFF) to :func:`rnon_engine.batch.stack.run_stack` and image files (a folder or a
single file) to :func:`rnon_engine.batch.folder.run_files`. It never builds a network for
a run on dask workers, nor imports torch: the provenance and the early refusal of bad
weights files come from the files' metadata. Before the first write, every worker (or,
without dask, this process) loads the model, so weights or a device that cannot be loaded
stop the run with nothing written.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from rnon_engine.batch.executor import check_scheduler
from rnon_engine.batch.folder import run_files
from rnon_engine.batch.io import ImageInfo, classify_path, describe_input
from rnon_engine.batch.lock import output_lock
from rnon_engine.batch.options import BatchOptions, BatchReport, check_options
from rnon_engine.batch.paths import (
    check_output_path,
    check_writable,
    default_mask,
    default_output,
    resolve_path,
)
from rnon_engine.batch.stack import run_stack
from rnon_engine.errors import InputError

__all__ = ["run_batch"]


def run_batch(opts: BatchOptions) -> BatchReport:
    """Run ``rnon-batch`` with ``opts``.

    Raises:
        InputError: A path, shape, axis or option is wrong (nothing has been written).
        WeightsError: The model cannot be loaded.
        Cancelled: Ctrl-C; the output is left resumable.
        OutputError: The output cannot be written (full disk...); what is done is kept.
    """
    t_start = time.perf_counter()
    check_options(opts)
    inp_path = resolve_path(opts.input, "INPUT")
    kind = classify_path(inp_path, "INPUT")
    image = None if kind == "folder" else describe_input(inp_path, axes=opts.axes)
    if opts.mask is None and opts.mask_value is None:
        mask_path: Path | None = default_mask(inp_path, image)
    else:
        mask_path = resolve_path(opts.mask, "MASK") if opts.mask is not None else None
    out_path = (
        Path(opts.output).expanduser() if opts.output is not None else default_output(inp_path)
    )
    out_path = Path(os.path.abspath(out_path))
    resolved_out = resolve_path(out_path, "--output")
    check_output_path(resolved_out, [inp_path] + ([mask_path] if mask_path else []))
    if mask_path is not None:
        classify_path(mask_path, "MASK")
    if opts.scheduler is not None:
        check_scheduler(opts.scheduler)
    if opts.dry_run:
        return _dispatch(opts, kind, inp_path, mask_path, out_path, image, t_start)
    check_writable(out_path)
    with output_lock(out_path, opts.argv, opts.log):
        return _dispatch(opts, kind, inp_path, mask_path, out_path, image, t_start)


def _dispatch(
    opts: BatchOptions,
    kind: str,
    inp_path: Path,
    mask_path: Path | None,
    out_path: Path,
    image: ImageInfo | None,
    t_start: float,
) -> BatchReport:
    if kind in ("folder", "image"):
        if opts.context_planes or opts.model in ("neighbours", "stack"):
            raise InputError(
                "--context-planes and --model neighbours / stack repair stacks (zarr, OME-Zarr, "
                "TIFF with a Z or T axis); INPUT is "
                f"{'a folder' if kind == 'folder' else 'an image'} of separate pictures: "
                "leave them out"
            )
        return run_files(opts, kind, inp_path, mask_path, out_path, image, t_start)
    assert image is not None
    return run_stack(opts, image, mask_path, out_path, t_start)
