"""What ``rnon-batch`` tells its user: the dry run's plan and estimate, the final summary."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnon_engine.batch.options import BatchOptions, BatchReport

__all__ = ["Reporter", "early_exit", "estimate_seconds", "fmt_seconds", "finished", "mask_text"]


def fmt_seconds(s: float) -> str:
    """Seconds as ``H:MM:SS``."""
    return str(datetime.timedelta(seconds=round(s)))


def mask_text(mask_path: Path | None, opts: BatchOptions) -> str:
    """The mask as the plan names it."""
    return str(mask_path) if mask_path else f"INPUT == {opts.mask_value}"


@dataclass
class Reporter:
    """Builds the :class:`BatchReport` of one run from what all its reports share."""

    output: Path
    form: str
    units: int
    planes: int
    hole_planes: int
    t_start: float

    def __call__(self, **counts: Any) -> BatchReport:
        """The report, with ``counts`` (computed, copied, skipped...) and the time so far."""
        return BatchReport(
            output=str(self.output),
            form=self.form,
            units=self.units,
            planes=self.planes,
            hole_planes=self.hole_planes,
            seconds=time.perf_counter() - self.t_start,
            **counts,
        )


def estimate_seconds(
    opts: BatchOptions,
    probe: Callable[[], float],
    n_compute: int,
    n_copy: int,
    copy_probe: Callable[[], float] | None,
) -> float:
    """Estimated seconds: one probe unit timed, times the count, over the workers."""
    t_compute = probe() if n_compute else 0.0
    t_copy = copy_probe() if (copy_probe and n_copy) else 0.0
    par = opts.workers or 1
    return (t_compute * n_compute + t_copy * n_copy) / par


def early_exit(
    opts: BatchOptions,
    text: str,
    status: str,
    report: Reporter,
    estimate: Callable[[], tuple[float, str]],
    planned: tuple[int, int] = (0, 0),
) -> BatchReport | None:
    """``--dry-run``: print the plan and the estimate; a complete output: nothing to do.

    Returns the report in those two cases (a dry run's ``computed, copied`` are the
    ``planned`` counts), None when there is work to do.
    """
    if opts.dry_run:
        est, how = estimate()
        text += f"\nestimated time: {fmt_seconds(est)} ({how})"
        print(text)
        computed, copied = planned
        return report(
            computed=computed, copied=copied, dry_run=True, estimate_s=est, plan_text=text
        )
    opts.log(text)
    if status == "complete":
        opts.log(f"rnon-batch: {report.output} is already complete (same command); nothing to do.")
        return report(skipped=report.units)
    return None


def finished(
    opts: BatchOptions,
    report: Reporter,
    results: list[dict[str, Any]],
    skipped: int,
    summary: str,
) -> BatchReport:
    """The report of a run that executed ``results`` (and says so)."""
    computed = sum(1 for r in results if r["planes"] > 0)
    done = report(computed=computed, copied=len(results) - computed, skipped=skipped)
    opts.log(f"rnon-batch: wrote {done.output} ({summary}) in {fmt_seconds(done.seconds)}.")
    return done
