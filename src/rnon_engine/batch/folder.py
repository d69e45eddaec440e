"""A file run of ``rnon-batch``: a folder of image files, or a single image file.

Each image file is one unit of work (:func:`rnon_engine.batch.tasks.process_file`),
written atomically; a manifest (``OUTPUT/.rnon-batch.json`` or
``<output>.rnon-batch.json``) holds the provenance and fingerprint, and a rerun of the
same command skips the files already written.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rnon_engine.batch.estimates import collect_files
from rnon_engine.batch.executor import execute
from rnon_engine.batch.io import (
    IMAGE_SUFFIXES,
    ArrayRef,
    ImageInfo,
    describe_image_file,
    pair_folder,
    read_image_header,
    read_json,
)
from rnon_engine.batch.masks import MaskInfo, fit_mask, image_file_colour
from rnon_engine.batch.models import describe_model, get_inpainter
from rnon_engine.batch.options import BatchOptions, BatchReport
from rnon_engine.batch.plan import check_plan, fingerprint, make_blocks, scan_holes
from rnon_engine.batch.report import Reporter, early_exit, estimate_seconds, finished, mask_text
from rnon_engine.batch.resume import (
    ATTRS_KEY,
    STATE_DIR,
    decide_existing,
    provenance,
    what_is_read,
)
from rnon_engine.batch.tasks import FileJob, inpaint_array, load_image_file, process_file
from rnon_engine.batch.writers import remove_path
from rnon_engine.errors import InputError

__all__ = ["check_file_pair", "run_files"]


def run_files(
    opts: BatchOptions,
    kind: str,
    inp_path: Path,
    mask_path: Path | None,
    out_path: Path,
    image: ImageInfo | None,
    t_start: float,
) -> BatchReport:
    """Run (or dry-run) a folder (``kind="folder"``) or one image file (``"image"``)."""
    if kind == "folder":
        if mask_path is not None and not mask_path.is_dir():
            raise InputError(
                f"INPUT is a folder, so --mask must be a folder of same-named masks; "
                f"{str(mask_path)!r} is not a folder."
            )
        pairs = pair_folder(inp_path, mask_path)
        if out_path.exists() and not out_path.is_dir():
            raise InputError(f"INPUT is a folder, so --output must be a folder: {out_path}.")
        units = [(s, m, str(out_path / Path(s).name)) for s, m in pairs]
        manifest = out_path / (STATE_DIR + ".json")
        state = out_path / STATE_DIR
    else:
        pairs = [(str(inp_path), str(mask_path) if mask_path else None)]
        if out_path.suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(
                f"--output {str(out_path)!r}: give an image file name (e.g. "
                f"{inp_path.stem}.repaired{inp_path.suffix})."
            )
        units = [(str(inp_path), pairs[0][1], str(out_path))]
        manifest = out_path.with_name(out_path.name + STATE_DIR + ".json")
        state = out_path.with_name(out_path.name + STATE_DIR)
    # validate every pair before any work: shapes from headers, then the masks and values
    for s, m in pairs:
        check_file_pair(s, m, opts.axes)
    holes = _scan_files(opts, pairs)
    if opts.mask_value is not None and not any(holes):
        raise InputError(
            f"no pixel of {'any image in ' if kind == 'folder' else ''}{str(inp_path)!r} equals "
            f"--mask-value {opts.mask_value:g}, so there is nothing to repair. Check the value "
            "(e.g. 65535 for saturated uint16 pixels, 0 for dead ones). Nothing was written."
        )
    if opts.mask_value is not None and not all(holes):
        plain = [Path(s).name for (s, _), h in zip(pairs, holes, strict=True) if not h]
        opts.log(
            f"rnon-batch: {len(plain)} image(s) have no pixel equal to {opts.mask_value:g} and "
            f"are copied unchanged: {', '.join(plain[:5])}{' ...' if len(plain) > 5 else ''}"
        )
    spec, prov = describe_model(opts)
    what = what_is_read(opts, str(inp_path), mask_path)
    fp = fingerprint(
        {
            **what,
            "model": prov,
            "tile": opts.tile,
            "axes": opts.axes,
            "kind": kind,
            **({"estimate_error": True} if opts.estimate_error else {}),
        }
    )
    existing = read_json(manifest)
    existing = existing.get(ATTRS_KEY) if existing else None
    if kind == "folder" and out_path.is_dir() and not any(out_path.iterdir()):
        status = "new"
    else:
        status = decide_existing(out_path, existing, fp, opts)
    attrs = provenance(opts, prov, fp, what)
    text = "\n".join(
        [
            f"input:  {inp_path} [{kind}], {len(units)} image(s)",
            f"mask:   {mask_text(mask_path, opts)}",
            f"output: {out_path} ({status})",
            f"model:  {opts.model} (stages {opts.stages}, tile {opts.tile}, device {opts.device})",
        ]
    )
    report = Reporter(out_path, kind, len(units), len(units), 0, t_start)

    def estimate() -> tuple[float, str]:
        def probe() -> float:
            inp = get_inpainter(spec)
            t0 = time.perf_counter()
            s, m, _ = units[0]
            data, info, mm = load_image_file(s, m, opts.axes, opts.mask_value)
            if mm.any():
                inpaint_array(inp, info, data, mm, opts.stages)
            return time.perf_counter() - t0

        est = estimate_seconds(opts, probe, len(units), 0, None)
        return est, "from a probe of the first image"

    early = early_exit(opts, text, status, report, estimate)
    if early is not None:
        return early
    todo = [u for u in units if not (status == "resume" and Path(u[2]).exists())]

    def start() -> FileJob:
        if status == "overwrite":
            remove_path(out_path)
            remove_path(manifest)
            remove_path(state)
        if kind == "folder":
            out_path.mkdir(parents=True, exist_ok=True)
        else:
            out_path.parent.mkdir(parents=True, exist_ok=True)
        if status != "resume":
            manifest.write_text(json.dumps({ATTRS_KEY: attrs}, indent=1))
        figures = str(state) if opts.estimate_error else None
        return FileJob(opts.axes, spec, opts.stages, opts.mask_value, attrs, figures)

    results = execute(
        opts, process_file, todo, "image", model=spec, start=start, output=str(out_path)
    )
    if opts.estimate_error:
        names = [Path(dst).name for _, _, dst in units]
        attrs["error_estimate"] = collect_files(state, names)
    manifest.write_text(json.dumps({ATTRS_KEY: {**attrs, "complete": True}}, indent=1))
    remove_path(state)
    return finished(opts, report, results, len(units) - len(todo), f"{len(results)} image(s)")


def _scan_files(opts: BatchOptions, pairs: list[tuple[str, str | None]]) -> list[bool]:
    """Read every image and mask once; refuse bad planes; whether each image has holes."""

    def one(pair: tuple[str, str | None]) -> bool:
        src, mpath = pair
        shape, dtype = read_image_header(src, "image")
        info = describe_image_file(src, shape, dtype, opts.axes)
        if mpath is None:
            mask = MaskInfo(None, opts.mask_value)
        else:
            mshape, _ = read_image_header(mpath, "mask")
            mask = fit_mask(mshape, image_file_colour(mshape), info, ArrayRef("image", mpath))
        plan = make_blocks(info, max_block_mb=float("inf"))
        plan = scan_holes(info, mask, plan, tile=opts.tile, threads=1, check_values=True)
        check_plan(info, plan, opts.mask_value, require_holes=False)
        return any(b.holes for b in plan.blocks)

    threads = 2 if opts.threads is None else opts.threads
    with ThreadPoolExecutor(max(1, threads)) as pool:
        return list(pool.map(one, pairs))


def check_file_pair(src: str, mask: str | None, axes: str | None) -> None:
    """Check one image/mask pair from their headers; raise InputError if they do not fit."""
    shape, dtype = read_image_header(src, "image")
    info = describe_image_file(src, shape, dtype, axes)
    if mask is None:
        return
    mshape, _ = read_image_header(mask, "mask")
    try:
        fit_mask(mshape, image_file_colour(mshape), info, None)
    except InputError as exc:
        raise InputError(
            f"mask {mask!r} has shape {mshape} but image {src!r} has shape {shape}; a mask "
            "must have the image's shape or its YX shape."
        ) from exc
