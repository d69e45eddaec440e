"""What ``rnon-batch`` takes (:class:`BatchOptions`) and what a run did (:class:`BatchReport`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from rnon_engine.errors import InputError

__all__ = ["BatchOptions", "BatchReport", "check_options"]


@dataclass
class BatchOptions:
    """Everything ``rnon-batch`` takes (see ``rnon-batch --help`` for each)."""

    input: str
    mask: str | None = None
    output: str | None = None
    mask_value: float | None = None
    model: str = "default"
    stage2: str | None = None
    stages: str = "both"
    axes: str | None = None
    workers: int | None = None
    scheduler: str | None = None
    device: str = "auto"
    tile: int = 512
    halo: int = 128
    max_block_mb: float = 512.0
    threads: int | None = None
    overwrite: bool = False
    dry_run: bool = False
    estimate_error: bool = False
    context_planes: int = 0
    stack_axis: str | None = None
    progress: bool = True
    argv: list[str] | None = None
    log: Callable[[str], None] = field(default=lambda s: print(s, file=sys.stderr), repr=False)


@dataclass
class BatchReport:
    """What a run did (returned by :func:`~rnon_engine.batch.run_batch`).

    Attributes:
        output: The output path.
        form: ``"zarr"``, ``"ome-zarr"``, ``"tiff"``, ``"folder"`` or ``"image"``.
        units: Blocks (or image files) in the plan.
        computed: Units that were inpainted in this run.
        copied: Units run in this run that had no hole pixels (copied).
        skipped: Units already done by an earlier run (resume, complete output).
        hole_planes: Planes with hole pixels (block forms; 0 when unknown).
        planes: Planes (or image files) in the input.
        seconds: Wall time of the call.
        dry_run: True for ``--dry-run`` (nothing written).
        estimate_s: The dry run's estimated time.
        plan_text: The dry run's plan.
        mask_changed: Blocks redone because the mask changed since the output was made.
    """

    output: str
    form: str
    units: int
    computed: int = 0
    copied: int = 0
    skipped: int = 0
    hole_planes: int = 0
    planes: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    estimate_s: float | None = None
    plan_text: str = ""
    mask_changed: int = 0


def check_options(opts: BatchOptions) -> None:
    """Refuse options that contradict each other or are out of range (nothing is read yet).

    Raises:
        InputError: with what is wrong and what to give instead.
    """
    if opts.workers is not None and opts.scheduler is not None:
        raise InputError("give either --workers or --scheduler, not both.")
    if opts.workers is not None and opts.workers < 1:
        raise InputError(f"--workers must be >= 1, got {opts.workers}.")
    if opts.stages not in ("both", "repair"):
        raise InputError(f"--stages must be 'both' or 'repair', got {opts.stages!r}.")
    if opts.mask is not None and opts.mask_value is not None:
        raise InputError("give either --mask or --mask-value, not both.")
    if opts.halo < 0:
        raise InputError(f"--halo must be >= 0, got {opts.halo}.")
    if opts.tile < 1:
        raise InputError(
            f"--tile must be a positive number of pixels, got {opts.tile}; the default is 512."
        )
    if not opts.max_block_mb > 0:
        raise InputError(
            f"--max-block-mb must be a positive number of megabytes, got {opts.max_block_mb}; "
            "the default is 512."
        )
    if opts.context_planes < 0:
        raise InputError(f"--context-planes must be >= 0, got {opts.context_planes}.")
    if (
        opts.stack_axis is not None
        and not opts.context_planes
        and opts.model not in ("neighbours", "stack")
    ):
        raise InputError(
            "--stack-axis goes with --context-planes K (K >= 1), --model neighbours or "
            "--model stack."
        )
    if opts.threads is not None and opts.threads < 1:
        raise InputError(f"--threads must be >= 1, got {opts.threads}.")
