"""What a run records beside its pixels: auto's pixels per method and the error estimate.

:class:`PlaneRecorder` wraps the engine's ``inpaint`` for one part of a run (worker
thread): after each plane it keeps the hole pixels filled by each method (an ``"auto"``
inpainter's ``last_counts``) and, when asked, the plane's error estimate
(:func:`rnon_engine.inference.estimate.estimate_error`, the same method on known pixels
hidden in the holes' shapes). :func:`summary` pools them over the planes for the result
layer's metadata; :func:`summary_text` says it in words for the status line. No Qt, no
napari; the engine is imported only when an estimate is computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_rnon._planes import PlaneIndex, plane_label

__all__ = ["ESTIMATE_SEED", "PlaneRecorder", "summary", "summary_text"]

#: Seed of the estimate's probe placement: the same run gives the same estimate.
ESTIMATE_SEED = 0


@dataclass
class PlaneRecorder:
    """Runs ``inpainter.inpaint`` plane by plane and records what each plane's run did.

    Attributes:
        inpainter: The engine (``inpaint(...)``; ``last_counts`` when it is ``"auto"``).
        stages: Stages passed to ``inpaint``.
        channel_axis: Channel axis passed to ``inpaint``.
        estimate: Whether to estimate each plane's error after repairing it.
        records: One dict per repaired plane, in run order: ``holes`` (pixels),
            ``pixels_per_method`` (auto only) and ``rmse`` (with ``estimate``).
    """

    inpainter: Any
    stages: str
    channel_axis: int | None
    estimate: bool = False
    records: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, plane: np.ndarray, mask: np.ndarray, progress: Any, cancel: Any) -> Any:
        """Repair one plane (the ``inpaint`` function of :func:`run_planes`)."""
        out = self.inpainter.inpaint(
            plane,
            mask,
            stages=self.stages,
            channel_axis=self.channel_axis,
            progress=progress,
            cancel=cancel,
        )
        record: dict[str, Any] = {"holes": int(np.count_nonzero(mask))}
        counts = getattr(self.inpainter, "last_counts", None)
        if isinstance(counts, dict):  # read now: the estimate's repairs overwrite it
            record["pixels_per_method"] = {str(k): int(v) for k, v in counts.items()}
        if self.estimate:
            from rnon_engine.inference.estimate import estimate_error

            record["rmse"] = float(
                estimate_error(
                    self.inpainter,
                    plane,
                    mask,
                    seed=ESTIMATE_SEED,
                    # an Optimise result is stage 1 + stage 2: estimate both, since
                    # stage 2 alone on hidden known pixels would not repair them
                    stages="both" if self.stages == "optimize" else self.stages,
                    channel_axis=self.channel_axis,
                    cancel=cancel,
                )
            )
        self.records.append(record)
        return out


def summary(planes: list[PlaneIndex], records: list[dict[str, Any]]) -> dict[str, Any]:
    """Metadata entries for a part's result: pixels per method and the error estimate.

    Args:
        planes: The repaired planes, in run order (``RunResult.planes``' keys).
        records: :attr:`PlaneRecorder.records`, one per repaired plane.

    Returns:
        ``{"pixels_per_method": {...}}`` summed over the planes (auto runs), and
        ``{"error_estimate": {"rmse", "units", "seed", "planes"}}`` when estimated: the
        overall RMSE pools the planes' squared errors weighted by their hole pixels.
    """
    out: dict[str, Any] = {}
    if any("pixels_per_method" in r for r in records):
        total: dict[str, int] = {}
        for r in records:
            for method, n in r.get("pixels_per_method", {}).items():
                total[method] = total.get(method, 0) + n
        out["pixels_per_method"] = total
    if records and all("rmse" in r for r in records):
        weight = sum(r["holes"] for r in records)
        pooled = math.sqrt(sum(r["rmse"] ** 2 * r["holes"] for r in records) / max(weight, 1))
        out["error_estimate"] = {
            "rmse": pooled,
            "units": "image values (root-mean-square error of the repaired pixels)",
            "seed": ESTIMATE_SEED,
            "planes": {plane_label(idx): r["rmse"] for idx, r in zip(planes, records, strict=True)},
        }
    return out


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def summary_text(meta: dict[str, Any]) -> str:
    """The status line's words for :func:`summary`'s entries (empty when there are none)."""
    parts = []
    counts = meta.get("pixels_per_method")
    if counts:
        names = {"default": "network", "ns": "navier-stokes"}
        parts.append(
            "filled by " + ", ".join(f"{names.get(m, m)} {n} px" for m, n in sorted(counts.items()))
        )
    est = meta.get("error_estimate")
    if est:
        parts.append(f"estimated error (RMSE) {_fmt(est['rmse'])} in image values")
    return "; ".join(parts)
