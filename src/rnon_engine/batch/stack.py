"""A stack run of ``rnon-batch``: zarr, OME-Zarr or TIFF INPUT, cut into blocks.

The driver plans (:mod:`rnon_engine.batch.plan`), decides what an existing output means
(:mod:`rnon_engine.batch.resume`), prints the plan or runs the blocks not yet done
(:mod:`rnon_engine.batch.executor`, :func:`rnon_engine.batch.tasks.process_block`) and
finishes the output (:mod:`rnon_engine.batch.writers`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rnon_engine.batch.context import accept_full_planes, extend_windows, resolve_stack_axis
from rnon_engine.batch.estimates import collect
from rnon_engine.batch.executor import execute, stopped_error
from rnon_engine.batch.io import TIFF_SUFFIXES, ArrayRef, ImageInfo, open_array
from rnon_engine.batch.masks import MaskInfo
from rnon_engine.batch.models import describe_model, get_inpainter
from rnon_engine.batch.options import BatchOptions, BatchReport
from rnon_engine.batch.paths import describe_given_mask
from rnon_engine.batch.plan import (
    Block,
    Plan,
    check_plan,
    fingerprint,
    make_blocks,
    scan_holes,
)
from rnon_engine.batch.regions import read_region
from rnon_engine.batch.report import Reporter, early_exit, estimate_seconds, finished, mask_text
from rnon_engine.batch.resume import (
    STATE_DIR,
    decide_existing,
    provenance,
    read_tiff_attrs,
    read_zarr_attrs,
    what_is_read,
)
from rnon_engine.batch.tasks import BlockJob, inpaint_array, process_block, read_window
from rnon_engine.batch.writers import (
    copy_regions,
    create_output,
    finish_output,
    output_ref,
    remove_path,
    staging_path,
    write_attrs,
)
from rnon_engine.errors import InputError

__all__ = ["output_form", "run_stack"]


def output_form(image: ImageInfo, out_path: Path) -> str:
    """``"ome-zarr"``, ``"tiff"`` or ``"zarr"``: what OUTPUT will be, or raise."""
    suffix = out_path.name.lower()
    if image.form == "ome-zarr":
        if suffix.endswith(TIFF_SUFFIXES):
            raise InputError("an OME-Zarr INPUT is written as OME-Zarr: give a .zarr --output.")
        return "ome-zarr"
    if suffix.endswith(TIFF_SUFFIXES):
        if image.form not in ("tiff", "ome-tiff"):
            raise InputError("a TIFF --output needs a TIFF INPUT; give a .zarr --output.")
        return "tiff"
    if image.form in ("tiff", "ome-tiff") and not suffix.endswith(".zarr"):
        raise InputError(
            f"--output {str(out_path)!r}: for a TIFF INPUT give a .tif/.tiff (or .zarr) output."
        )
    return "zarr"


def run_stack(
    opts: BatchOptions, image: ImageInfo, mask_path: Path | None, out_path: Path, t_start: float
) -> BatchReport:
    """Run (or dry-run) a zarr / OME-Zarr / TIFF INPUT into ``out_path``."""
    mask = (
        describe_given_mask(mask_path, image, from_label=opts.mask is None)
        if mask_path is not None
        else MaskInfo(None, opts.mask_value)
    )
    form = output_form(image, out_path)
    if opts.model == "neighbours":  # the neighbour fill, biharmonic where none knows
        opts = replace(opts, model="biharmonic", context_planes=opts.context_planes or 2)
        stack_fill: dict[str, Any] = {"stack_fill": "neighbours"}
    elif opts.model == "stack":  # the stack model, the default model where none knows
        opts = replace(opts, context_planes=opts.context_planes or 2)
        stack_fill = {"stack_fill": "rnon-repair-stack"}
    elif opts.model == "auto" and opts.context_planes:  # auto fills with the stack model
        stack_fill = {"stack_fill": "rnon-repair-stack"}
    else:
        stack_fill = {}
    k = opts.context_planes
    sa = resolve_stack_axis(image, opts.stack_axis, k) if k else None
    plan = make_blocks(image, halo=opts.halo, max_block_mb=opts.max_block_mb)
    # Before anything is written: the holes of every block (blocks without holes are
    # copied), the mask's digest, and the planes the engine would refuse.
    plan = scan_holes(image, mask, plan, tile=opts.tile, check_values=True)
    if sa is not None:  # blocks read k planes more each side along the stack axis
        plan = accept_full_planes(extend_windows(plan, image, sa, k), image, sa, k)
        stack_fill.update(context_planes=k, stack_axis=image.axes[sa])
    check_plan(image, plan, opts.mask_value if mask.ref is None else None)
    spec, prov = describe_model(opts)
    what = what_is_read(opts, image.path, mask_path)
    fp = fingerprint(
        {
            **what,
            "ref": image.ref.path,
            "shape": image.shape,
            "axes": image.axes,
            "model": prov,
            "tile": opts.tile,
            "form": form,
            "step": plan.step,
            "halo": plan.halo,
            # only when on, so outputs made before the option existed still resume
            **({"estimate_error": True} if opts.estimate_error else {}),
            **stack_fill,
        }
    )
    if form == "tiff":
        work = staging_path(out_path)
        existing = read_tiff_attrs(out_path) if out_path.exists() else read_zarr_attrs(work)
        state_root = work
        status = decide_existing(out_path if out_path.exists() else work, existing, fp, opts)
    else:
        work = out_path
        existing = read_zarr_attrs(out_path)
        state_root = out_path
        status = decide_existing(out_path, existing, fp, opts)
    blocks = plan.blocks
    # The mask's digest per block with holes (a mask array only): a mask saved again (from
    # napari, say) redoes the blocks whose mask changed and keeps the others.
    digests = (
        {str(b.index): b.digest for b in blocks if b.holes > 0} if mask.ref is not None else None
    )
    changed = _changed_blocks(existing, digests) if status in ("resume", "complete") else set()
    if status == "complete" and changed:
        status = "update"
    n_hole = sum(1 for b in blocks if b.holes != 0)
    hole_planes = sum(max(0, b.hole_planes) for b in blocks)
    shown = f"update: the mask changed in {len(changed)} blocks" if changed else status
    text = _plan_text(image, mask, mask_path, out_path, form, plan, shown, opts)
    report = Reporter(out_path, form, len(blocks), image.planes, hole_planes, t_start)

    def estimate() -> tuple[float, str]:
        def probe() -> float:
            b = next(b for b in blocks if b.holes > 0)
            inp = get_inpainter(spec)
            return _probe_block(image, mask, b, inp, opts.stages) * max(1, b.hole_planes)

        def copy_probe() -> float:
            b = blocks[0]
            t0 = time.perf_counter()
            with open_array(image.ref) as src:
                read_region(src, image.ref, b.slices(), "INPUT")
            return 2 * (time.perf_counter() - t0)

        est = estimate_seconds(opts, probe, n_hole, len(blocks) - n_hole, copy_probe)
        return est, "from a probe of one plane; writes not timed"

    planned = (n_hole, len(blocks) - n_hole)
    early = early_exit(opts, text, status, report, estimate, planned)
    if early is not None:
        return early
    extra = {"axes": image.axes, "output_form": form, "mask_blocks": digests, **stack_fill}
    attrs = provenance(opts, prov, fp, {**what, **extra})
    state = state_root / STATE_DIR
    # A TIFF output left by the same command but not marked complete: start again.
    restart_tiff = status == "resume" and form == "tiff" and out_path.exists()
    # A finished TIFF whose mask changed: a new staging store, the kept blocks copied in.
    restage = status == "update" and form == "tiff"
    fresh = status in ("new", "overwrite") or restart_tiff or restage or not work.exists()
    markers = state / "done"
    every = {str(b.index) for b in blocks}
    if status == "update":
        done = every - changed
    elif fresh or not markers.is_dir():
        done = set()
    else:
        done = {p.name for p in markers.iterdir()} - changed
    todo = [b for b in blocks if str(b.index) not in done]
    if changed:
        opts.log(
            f"rnon-batch: the mask changed in {len(changed)} of {len(blocks)} blocks since "
            f"{out_path} was written: redoing those, keeping the others."
        )
    elif status == "resume":
        opts.log(
            f"rnon-batch: resuming {out_path}: {len(blocks) - len(todo)} of {len(blocks)} "
            "blocks already done."
        )

    def start() -> BlockJob:
        if status == "overwrite":
            remove_path(out_path)
            if form == "tiff":
                remove_path(work)
        if restart_tiff or restage:
            remove_path(work)
        out_ref = (
            create_output(image, work, form, attrs) if fresh else output_ref(image, work, form)
        )
        markers.mkdir(parents=True, exist_ok=True)
        if restage:  # the kept blocks, from the finished TIFF
            kept = [b for b in blocks if str(b.index) in done]
            copy_regions(ArrayRef("tiff", str(out_path)), out_ref, [b.slices() for b in kept])
        if status == "update" or (changed and not fresh):
            # Markers first (kept blocks on, changed blocks off), then the new digests: a
            # run killed in between redoes at worst the same blocks.
            for i in every:
                marker = markers / i
                if i in done:
                    marker.touch()
                else:
                    marker.unlink(missing_ok=True)
            write_attrs(work, attrs)
        return BlockJob(
            image,
            mask,
            out_ref,
            str(state),
            spec,
            opts.stages,
            estimate=opts.estimate_error,
            context=(sa, k) if sa is not None else None,
        )

    model = spec if any(b.holes != 0 for b in todo) else None
    results = execute(
        opts, process_block, todo, "block", model=model, start=start, output=str(work)
    )
    if opts.estimate_error:
        earlier = existing.get("error_estimate") if existing and status != "overwrite" else None
        holed = [str(b.index) for b in blocks if b.holes != 0]
        attrs["error_estimate"] = collect(state, holed, earlier)
    try:
        finish_output(image, work, out_path, form, attrs, state)
    except OSError as exc:
        raise stopped_error(exc, str(out_path), len(blocks), len(blocks), "block") from exc
    inpainted = sum(r["planes"] for r in results)
    summary = f"{len(results)} blocks run, {inpainted} planes inpainted"
    if changed:
        summary += f"; {len(changed)} blocks redone because the mask changed"
    done_report = finished(opts, report, results, len(blocks) - len(todo), summary)
    done_report.mask_changed = len(changed)
    return done_report


def _changed_blocks(existing: dict[str, Any] | None, digests: dict[str, str] | None) -> set[str]:
    """Blocks (by index) whose mask differs from the one the existing output was made with."""
    if digests is None or existing is None:
        return set()
    old = existing.get("mask_blocks") or {}
    return {i for i in set(old) | set(digests) if old.get(i) != digests.get(i)}


def _probe_block(image: ImageInfo, mask: MaskInfo, b: Block, inp: Any, stages: str) -> float:
    """Seconds to inpaint one plane of block ``b`` (read included)."""
    one = tuple(  # the window's first plane only
        s if d in (image.y, image.x, image.color_axis) else slice(s.start, s.start + 1)
        for d, s in enumerate(b.slices("window"))
    )
    t0 = time.perf_counter()
    data, m = read_window(image, mask, one)
    if not m.any():
        return 0.0
    inpaint_array(inp, image, data, m, stages)
    return time.perf_counter() - t0


def _plan_text(
    image: ImageInfo,
    mask: MaskInfo,
    mask_path: Path | None,
    out: Path,
    form: str,
    plan: Plan,
    status: str,
    opts: BatchOptions,
) -> str:
    blocks = plan.blocks
    lines = [
        f"input:  {image.path} [{image.form}] shape {image.shape} {image.dtype}, axes "
        f"{image.axes} (from {image.axes_source}), chunks {image.chunks}",
        f"mask:   {mask_text(mask_path, opts)}"
        + (f" shape {mask.shape} (broadcast over leading axes)" if mask.broadcast else ""),
        f"output: {out} [{form}] ({status})",
        f"model:  {opts.model} (stages {opts.stages}, tile {opts.tile}, device {opts.device})"
        + (
            f"; neighbouring planes: {opts.context_planes} each side"
            if opts.context_planes
            else ""
        ),
        f"blocks: {len(blocks)} of {plan.step}"
        + (f", YX-chunked with a {plan.halo}-px halo" if plan.split_yx else ", whole YX planes")
        + f"; planes: {image.planes}",
    ]
    if plan.known:
        n_hole = sum(1 for b in blocks if b.holes > 0)
        lines.append(
            f"holes:  {sum(b.holes for b in blocks)} pixels in {n_hole} blocks, "
            f"{sum(b.hole_planes for b in blocks)} planes, {sum(b.tiles for b in blocks)} "
            f"tiles of {opts.tile} px; {len(blocks) - n_hole} blocks copied"
        )
    else:
        lines.append("holes:  found by each task (the mask comes from INPUT's values)")
    executor = (
        f"dask scheduler {opts.scheduler}"
        if opts.scheduler
        else f"LocalCluster with {opts.workers} worker(s)"
        if opts.workers
        else "this process (threads)"
    )
    lines.append(f"run on: {executor}")
    return "\n".join(lines)
