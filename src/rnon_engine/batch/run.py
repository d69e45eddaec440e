"""Execution of ``rnon-batch``: prepare, plan, run the blocks, finish the output.

One code path for every executor: the same task functions (:func:`process_block`,
:func:`process_file`) run in a thread pool of this process (the default), on a
``LocalCluster`` started for the run (``workers=N``) or on an existing dask.distributed
scheduler (``scheduler=ADDRESS``). Each task opens what it reads and writes itself and gets
its :class:`~rnon_engine.inference.Inpainter` from a per-process cache keyed by the model
name, weights hash and settings, so a model is loaded once per worker process.

The driver (this process) never builds a network for a run on dask workers, nor imports
torch: the provenance and the early refusal of bad weights files come from the files'
metadata (:func:`rnon_engine.inference.provenance.describe`). Before the first write, every worker
(or, without dask, this process) loads the model, so weights or a device that cannot be
loaded stop the run with nothing written.

Resumption: the output records a fingerprint of everything that decides its pixels. After a
block's data is written, an empty marker file ``<state>/done/<index>`` is created; a run
that finds an output with the same fingerprint skips the blocks with markers. A killed run
(SIGKILL included) leaves at worst a block written without its marker, which is simply
computed again (the result is deterministic).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shlex
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rnon_engine.batch.io import (
    ArrayRef,
    ImageInfo,
    MaskInfo,
    _resolve_axes,
    classify_path,
    create_zarr_like,
    describe_input,
    describe_mask,
    mask_window,
    open_array,
    pair_folder,
    read_image_file,
    read_json,
    write_image_file,
)
from rnon_engine.batch.plan import Block, Plan, fingerprint, make_blocks, scan_holes
from rnon_engine.errors import Cancelled, InputError, RnonError

__all__ = [
    "BatchOptions",
    "BatchReport",
    "ModelSpec",
    "run_batch",
    "process_block",
    "process_file",
    "get_inpainter",
]

STATE_DIR = ".rnon-batch"
ATTRS_KEY = "rnon_batch"
TEST_DELAY_ENV = "RNON_BATCH_TEST_DELAY"
"""Test hook: seconds every task sleeps before its work (used by the kill-and-resume test)."""


# --------------------------------------------------------------------------- options


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
    progress: bool = True
    argv: list[str] | None = None
    log: Callable[[str], None] = field(default=lambda s: print(s, file=sys.stderr), repr=False)


@dataclass
class BatchReport:
    """What a run did (returned by :func:`run_batch`).

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


@dataclass(frozen=True)
class ModelSpec:
    """How a worker builds (or finds in its cache) the inpainter."""

    name: str
    device: str
    tile: int
    threads: int | None
    stage2: str | None
    key: str

    def build(self) -> Any:
        """Load the inpainter (no cache)."""
        from rnon_engine.inference.inpainter import Inpainter

        return Inpainter.from_pretrained(
            self.name, self.device, stage2=self.stage2, tile_size=self.tile, threads=self.threads
        )


_MODELS: dict[str, Any] = {}
_MODELS_LOCK = threading.Lock()
_STOP = threading.Event()


def get_inpainter(spec: ModelSpec) -> Any:
    """The inpainter for ``spec``, loaded at most once per process."""
    with _MODELS_LOCK:
        inp = _MODELS.get(spec.key)
        if inp is None:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                inp = spec.build()
            _MODELS[spec.key] = inp
        return inp


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class BlockJob:
    """What every block task needs (small and picklable)."""

    image: ImageInfo
    mask: MaskInfo
    out: ArrayRef
    state: str
    model: ModelSpec
    stages: str


def _delay() -> None:
    d = os.environ.get(TEST_DELAY_ENV)
    if d:
        time.sleep(float(d))


def _inpaint_array(
    inp: Any,
    image: ImageInfo,
    data: np.ndarray,
    m: np.ndarray,
    stages: str,
    inner: tuple[slice, ...] | None = None,
) -> tuple[np.ndarray, int]:
    """Inpaint every plane of ``data`` with holes inside ``inner`` (default: all of it).

    Returns ``data[inner]`` repaired, and the number of planes inpainted.
    """
    nd = data.ndim
    if inner is None:
        inner = tuple(slice(None) for _ in data.shape)
    y, x, c = image.y, image.x, image.color_axis
    lead = [d for d in range(nd) if d not in (y, x, c)]
    order = lead + [y, x] + ([c] if c is not None else [])
    mshape = tuple(1 if d == c else s for d, s in enumerate(data.shape))
    mt = np.transpose(np.broadcast_to(m, mshape), order)
    if c is not None:
        mt = mt[..., 0]
    dt = np.transpose(data, order)
    it = tuple(inner[d] for d in order)
    out = np.array(dt, copy=True)
    n = 0
    for idx in np.ndindex(*dt.shape[: len(lead)]):
        plane_mask = mt[idx]
        if not plane_mask[it[len(lead)], it[len(lead) + 1]].any():
            continue
        out[idx] = inp.inpaint(
            dt[idx],
            plane_mask,
            stages=stages,
            channel_axis=-1 if c is not None else None,
            cancel=_STOP.is_set,
        )
        n += 1
    result = out[it]
    return np.transpose(result, np.argsort(order)), n


def _read_window(
    image: ImageInfo, mask: MaskInfo, window: tuple[slice, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """INPUT's values in ``window`` and the boolean repair mask there (see mask_window)."""
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(open_array(image.ref))
        marr = stack.enter_context(open_array(mask.ref)) if mask.ref is not None else None
        data = np.asarray(src[window])
        return data, mask_window(mask, image, window, marr, data)


def process_block(job: BlockJob, block: Block) -> dict[str, Any]:
    """Compute (or copy) one block and record it as done. Runs in any worker."""
    _delay()
    if _STOP.is_set():
        raise Cancelled("stopped")
    t0 = time.perf_counter()
    image = job.image
    region = block.slices()
    computed = 0
    if block.holes == 0:
        with open_array(image.ref) as src:
            result = np.asarray(src[region])
    else:
        data, m = _read_window(image, job.mask, block.slices("window"))
        inner = tuple(
            slice(a - w0, b - w0)
            for (a, b), (w0, _) in zip(block.region, block.window, strict=False)
        )
        m_inner = m[tuple(s if m.shape[d] > 1 else slice(None) for d, s in enumerate(inner))]
        if not m_inner.any():
            result = data[inner]
        else:
            inp = get_inpainter(job.model)
            result, computed = _inpaint_array(inp, image, data, m, job.stages, inner)
    with open_array(job.out, "r+") as out:
        out[region] = result
    (Path(job.state) / "done" / str(block.index)).touch()
    return {"index": block.index, "planes": computed, "seconds": time.perf_counter() - t0}


@dataclass(frozen=True)
class FileJob:
    """What every file task needs (folder and single-image modes)."""

    axes: str | None
    model: ModelSpec
    stages: str
    mask_value: float | None
    description: dict[str, Any]


def _file_info(path: str, data: np.ndarray, axes: str | None) -> ImageInfo:
    from rnon_engine.batch.io import _color_axis

    shape = tuple(int(s) for s in data.shape)
    ax, src = _resolve_axes(None, "rule", axes, shape, image_file=True)
    return ImageInfo(
        form="image",
        path=path,
        ref=ArrayRef("image", path),
        shape=shape,
        dtype=str(data.dtype),
        chunks=shape,
        write_chunks=shape,
        axes=ax,
        axes_source=src,
        color_axis=_color_axis(ax, shape, True),
    )


def _file_mask(
    info: ImageInfo, mask: np.ndarray | None, value: float | None, data: np.ndarray
) -> np.ndarray:
    if mask is None:
        return mask_window(MaskInfo(None, value), info, (), None, data)
    from rnon_engine.batch.io import _color_axis

    mshape = tuple(int(s) for s in mask.shape)
    keep = [i for i in range(len(info.shape)) if i != info.color_axis]
    spatial = tuple(info.shape[i] for i in keep)
    if mask.ndim == len(info.shape) and mshape == info.shape and info.color_axis is not None:
        mask = (mask != 0).any(axis=info.color_axis)
    else:
        mc = _color_axis(default_axes_safe(mshape), mshape, True)
        if mc is not None and tuple(s for i, s in enumerate(mshape) if i != mc) == spatial:
            mask = (mask != 0).any(axis=mc)
    if tuple(mask.shape) != spatial[-mask.ndim :] or mask.ndim < 2:
        raise InputError(
            f"mask shape {mshape} does not fit image {info.path!r} of shape {info.shape}."
        )
    out = (mask != 0).reshape([1] * (len(spatial) - mask.ndim) + list(mask.shape))
    if info.color_axis is not None:
        out = np.expand_dims(out, info.color_axis)
    return out


def default_axes_safe(shape: tuple[int, ...]) -> str:
    """:func:`default_axes` for image files, or YX-only letters for odd shapes."""
    from rnon_engine.batch.io import default_axes

    try:
        return default_axes(shape, image_file=True)
    except InputError:
        return "Q" * len(shape)


def _load_file(
    src: str, mpath: str | None, axes: str | None, mask_value: float | None
) -> tuple[np.ndarray, ImageInfo, np.ndarray]:
    """An image file, its description and its boolean mask (from ``mpath`` or the value)."""
    data = read_image_file(src)
    info = _file_info(src, data, axes)
    mask = read_image_file(mpath) if mpath is not None else None
    return data, info, _file_mask(info, mask, mask_value, data)


def process_file(job: FileJob, pair: tuple[str, str | None, str]) -> dict[str, Any]:
    """Repair one image file into its output file (written atomically)."""
    _delay()
    if _STOP.is_set():
        raise Cancelled("stopped")
    t0 = time.perf_counter()
    src, mpath, dst = pair
    data, info, m = _load_file(src, mpath, job.axes, job.mask_value)
    computed = 0
    if m.any():
        data, computed = _inpaint_array(get_inpainter(job.model), info, data, m, job.stages)
    write_image_file(dst, data, color=info.color_axis is not None, description=job.description)
    return {"index": dst, "planes": computed, "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------- executors


def _load_model(spec: ModelSpec) -> RnonError | None:
    """Load ``spec``'s inpainter into this process's cache (on a worker: ``client.run``).

    Returns the user's error (bad weights, device...) instead of raising it, so that the
    worker does not log it with a traceback; the driver raises it.
    """
    try:
        get_inpainter(spec)
    except RnonError as exc:
        return exc
    return None


class _Pool:
    """Threads in this process, a LocalCluster, or an existing scheduler: one interface."""

    def __init__(self, workers: int | None, scheduler: str | None, threads: int) -> None:
        self.workers, self.scheduler, self.threads = workers, scheduler, threads
        self.client: Any = None
        self.cluster: Any = None
        self.pool: Any = None

    def __enter__(self) -> _Pool:
        if self.scheduler or self.workers:
            from distributed import Client, LocalCluster

            if self.scheduler:
                self.client = Client(self.scheduler, timeout="30s")
            else:
                self.cluster = LocalCluster(
                    n_workers=self.workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                )
                self.client = Client(self.cluster)
        else:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="rnon-batch")
        return self

    def load(self, spec: ModelSpec) -> None:
        """Load the model in every worker (or this process) now, before anything is written.

        Bad weights, a device the workers lack, a path they cannot see: the error is raised
        here, in the driver. Each process keeps the model for its tasks.
        """
        if self.client is None:
            get_inpainter(spec)
            return
        for error in self.client.run(_load_model, spec).values():
            if error is not None:
                raise error

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.client is not None:
            return self.client.submit(fn, *args, pure=False)
        return self.pool.submit(fn, *args)

    def as_completed(self, futures: list[Any]) -> Iterator[Any]:
        if self.client is not None:
            from distributed import as_completed

            return iter(as_completed(futures))
        from concurrent.futures import as_completed

        return as_completed(futures)

    def stop(self, futures: list[Any]) -> None:
        _STOP.set()
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.cancel(futures)
        else:
            for f in futures:
                f.cancel()

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()
        _STOP.clear()


def _execute(
    opts: BatchOptions,
    fn: Callable[..., Any],
    units: list[Any],
    unit_name: str,
    *,
    model: ModelSpec | None,
    start: Callable[[], Any],
) -> list[dict[str, Any]]:
    """Run ``fn(job, unit)`` for every unit with a progress bar; Ctrl-C stops cleanly.

    The executor starts first and loads ``model`` where the units run (if any unit may
    need it); only then ``job = start()`` makes the first write (the output, its
    provenance), so a model that cannot be loaded leaves nothing behind.
    """
    from tqdm.auto import tqdm

    results: list[dict[str, Any]] = []
    if not units:
        start()
        return results
    threads = 2 if opts.threads is None else max(1, opts.threads)
    with _Pool(opts.workers, opts.scheduler, threads) as pool:
        if model is not None:
            pool.load(model)
        job = start()
        futures: list[Any] = []
        bar = tqdm(
            total=len(units),
            unit=unit_name,
            desc="rnon-batch",
            file=sys.stderr,
            disable=not opts.progress,
            dynamic_ncols=True,
        )
        try:
            futures = [pool.submit(fn, job, u) for u in units]
            for f in pool.as_completed(futures):
                results.append(f.result())
                bar.update(1)
        except KeyboardInterrupt:
            pool.stop(futures)
            bar.close()
            raise Cancelled(
                f"stopped by Ctrl-C after {len(results)} of {len(units)} {unit_name}s; run the "
                "same command again to finish the rest."
            ) from None
        except BaseException:
            pool.stop(futures)
            raise
        finally:
            bar.close()
    return results


# --------------------------------------------------------------------------- helpers


def _inside(a: Path, b: Path) -> bool:
    """True if ``a`` is ``b`` or lies inside it."""
    try:
        a.relative_to(b)
        return True
    except ValueError:
        return False


def _default_output(inp: Path) -> Path:
    if inp.is_dir() and inp.suffix.lower() != ".zarr":
        return inp.with_name(inp.name + ".repaired")
    name = inp.name
    for suffix in (".ome.zarr", ".ome.tiff", ".ome.tif", inp.suffix):
        if suffix and name.lower().endswith(suffix):
            return inp.with_name(name[: -len(suffix)] + ".repaired" + name[-len(suffix) :])
    return inp.with_name(name + ".repaired")


def _default_mask(inp: Path, image: ImageInfo | None) -> Path:
    label = inp / "labels" / "repair"
    if image is not None and image.form == "ome-zarr" and label.is_dir():
        return label
    where = (
        f"{str(inp)!r} has no label image 'repair' ({str(label)!r} does not exist)"
        if image is not None and image.form == "ome-zarr"
        else f"{str(inp)!r} is not an OME-Zarr image, so it cannot hold a repair label"
    )
    raise InputError(
        f"no mask given and {where}. Nothing was written. Give a mask in one of three ways: "
        "(1) in napari, open the OME-Zarr image, paint the pixels to repair and click "
        "'Save mask to OME-Zarr' in the Inpaint widget (this writes INPUT/labels/repair; "
        "then run this command again); (2) --mask MASK: a file or array of the image's "
        "shape or its YX shape, nonzero = repair; (3) --mask-value V: repair the pixels "
        "equal to V (dead or saturated pixels)."
    )


def _describe_mask(mask_path: Path, image: ImageInfo, *, from_label: bool) -> MaskInfo:
    """:func:`describe_mask`, with a message that names INPUT's ``labels/repair``."""
    if not from_label:
        return describe_mask(mask_path, image)
    try:
        return describe_mask(mask_path, image)
    except InputError as exc:
        raise InputError(
            f"the repair label {str(mask_path)!r} (used because no --mask was given) does not "
            f"fit the image: {exc} Save the mask again from napari (Inpaint > Save mask to "
            "OME-Zarr), or pass --mask MASK or --mask-value V."
        ) from exc


def _check_paths(output: Path, inputs: list[Path]) -> None:
    for p in inputs:
        if _inside(output, p) or _inside(p, output):
            raise InputError(
                f"--output {str(output)!r} is (or contains, or lies inside) the input "
                f"{str(p)!r}; rnon-batch never writes into its input: choose another --output."
            )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _json_safe(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _read_attrs(path: Path) -> dict[str, Any] | None:
    """The ``rnon_batch`` attributes of an existing zarr output, or None."""
    try:
        import zarr

        return dict(zarr.open(str(path), mode="r").attrs).get(ATTRS_KEY)
    except Exception:
        return None


def _read_tiff_attrs(path: Path) -> dict[str, Any] | None:
    try:
        import tifffile

        with tifffile.TiffFile(str(path)) as tf:
            if tf.is_ome:
                import re

                m = re.search(r"<Description>(.*?)</Description>", tf.ome_metadata or "", re.S)
                if m:
                    import html

                    return json.loads(html.unescape(m.group(1))).get(ATTRS_KEY)
            meta = tf.shaped_metadata
            if meta:
                return meta[0].get(ATTRS_KEY)
    except Exception:
        return None
    return None


# --------------------------------------------------------------------------- main entry


def run_batch(opts: BatchOptions) -> BatchReport:
    """Run ``rnon-batch`` with ``opts``.

    Raises:
        InputError: A path, shape, axis or option is wrong (nothing has been written).
        WeightsError: The model cannot be loaded.
        Cancelled: Ctrl-C; the output is left resumable.
    """
    t_start = time.perf_counter()
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
    inp_path = Path(opts.input).expanduser().resolve()
    kind = classify_path(inp_path, "INPUT")
    image = None if kind == "folder" else describe_input(inp_path, axes=opts.axes)
    if opts.mask is None and opts.mask_value is None:
        mask_path: Path | None = _default_mask(inp_path, image)
    else:
        mask_path = Path(opts.mask).expanduser().resolve() if opts.mask is not None else None
    out_path = (
        Path(opts.output).expanduser() if opts.output is not None else _default_output(inp_path)
    )
    out_path = Path(os.path.abspath(out_path))
    _check_paths(out_path.resolve(), [inp_path] + ([mask_path] if mask_path else []))
    if mask_path is not None:
        classify_path(mask_path, "MASK")

    if kind in ("folder", "image"):
        return _run_files(opts, kind, inp_path, mask_path, out_path, image, t_start)
    assert image is not None
    return _run_blocks(opts, image, mask_path, out_path, t_start)


def _model_spec(opts: BatchOptions) -> tuple[ModelSpec, dict[str, Any]]:
    """How workers build the model, and its provenance: from the weights' metadata only.

    Bad weights (missing, corrupt, foreign, the wrong model) are refused here, before any
    work; the networks are built (and the device checked) only where blocks run, see
    :meth:`_Pool.load`. This process never imports torch for it.
    """
    from rnon_engine.inference.provenance import describe

    prov = _json_safe(describe(opts.model, stage2=opts.stage2, tile_size=opts.tile))
    key = fingerprint(
        {
            "model": opts.model,
            "stage2": opts.stage2,
            "prov": prov,
            "device": opts.device,
            "tile": opts.tile,
            "threads": opts.threads,
        }
    )
    absolute = prov["method"] == "rnon" and Path(opts.model).exists()
    spec = ModelSpec(
        name=str(Path(opts.model).resolve()) if absolute else opts.model,
        device=opts.device,
        tile=opts.tile,
        threads=opts.threads,
        stage2=str(Path(opts.stage2).resolve()) if opts.stage2 else None,
        key=key,
    )
    return spec, prov


def _provenance(opts: BatchOptions, prov: dict[str, Any], fp: str, extra: dict[str, Any]) -> dict:
    from rnon_engine import __version__

    argv = opts.argv if opts.argv is not None else []
    return _json_safe(
        {
            "tool": "rnon-batch",
            "package_version": __version__,
            "model": prov,
            "arguments": argv,
            "command": shlex.join(["rnon-batch", *argv]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "fingerprint": fp,
            "complete": False,
            **extra,
        }
    )


def _decide_existing(
    out_path: Path, existing: dict[str, Any] | None, fp: str, opts: BatchOptions
) -> str:
    """``"new"``, ``"resume"``, ``"complete"`` or raise, for an output that may exist."""
    if not out_path.exists():
        return "new"
    if existing is not None and existing.get("fingerprint") == fp:
        return "complete" if existing.get("complete") else "resume"
    if opts.overwrite:
        return "overwrite"
    why = (
        "was written by rnon-batch with other arguments, input, mask or model"
        if existing is not None
        else "was not written by rnon-batch"
    )
    raise InputError(
        f"the output {str(out_path)!r} already exists and {why}; pass --overwrite to replace "
        "it, or choose another --output. (An output left by the very same command is resumed.)"
    )


def _estimate(
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


def _what(opts: BatchOptions, input_path: str, mask_path: Path | None) -> dict[str, Any]:
    """What a run reads and how: part of the fingerprint and of the output's attributes."""
    return {
        "input": input_path,
        "mask": str(mask_path) if mask_path else None,
        "mask_value": opts.mask_value,
        "stages": opts.stages,
    }


def _mask_text(mask_path: Path | None, opts: BatchOptions) -> str:
    return str(mask_path) if mask_path else f"INPUT == {opts.mask_value}"


@dataclass
class _Reporter:
    """Builds the :class:`BatchReport` of one run from what all its reports share."""

    output: Path
    form: str
    units: int
    planes: int
    hole_planes: int
    t_start: float

    def __call__(self, **counts: Any) -> BatchReport:
        return BatchReport(
            output=str(self.output),
            form=self.form,
            units=self.units,
            planes=self.planes,
            hole_planes=self.hole_planes,
            seconds=time.perf_counter() - self.t_start,
            **counts,
        )


def _early_exit(
    opts: BatchOptions,
    text: str,
    status: str,
    report: _Reporter,
    estimate: Callable[[], tuple[float, str]],
    planned: tuple[int, int] = (0, 0),
) -> BatchReport | None:
    """``--dry-run``: print the plan and the estimate; a complete output: nothing to do.

    Returns the report in those two cases (a dry run's ``computed, copied`` are the
    ``planned`` counts), None when there is work to do.
    """
    if opts.dry_run:
        est, how = estimate()
        text += f"\nestimated time: {_fmt_s(est)} ({how})"
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


def _ran(
    opts: BatchOptions,
    report: _Reporter,
    results: list[dict[str, Any]],
    skipped: int,
    summary: str,
) -> BatchReport:
    """The report of a run that executed ``results`` (and says so)."""
    computed = sum(1 for r in results if r["planes"] > 0)
    done = report(computed=computed, copied=len(results) - computed, skipped=skipped)
    opts.log(f"rnon-batch: wrote {done.output} ({summary}) in {_fmt_s(done.seconds)}.")
    return done


def _run_blocks(
    opts: BatchOptions, image: ImageInfo, mask_path: Path | None, out_path: Path, t_start: float
) -> BatchReport:
    mask = (
        _describe_mask(mask_path, image, from_label=opts.mask is None)
        if mask_path is not None
        else MaskInfo(None, opts.mask_value)
    )
    # output form
    suffix = out_path.name.lower()
    if image.form == "ome-zarr":
        form = "ome-zarr"
        if suffix.endswith((".tif", ".tiff")):
            raise InputError("an OME-Zarr INPUT is written as OME-Zarr: give a .zarr --output.")
    elif suffix.endswith((".tif", ".tiff")):
        form = "tiff"
    elif image.form in ("tiff", "ome-tiff") and not suffix.endswith(".zarr"):
        raise InputError(
            f"--output {str(out_path)!r}: for a TIFF INPUT give a .tif/.tiff (or .zarr) output."
        )
    else:
        form = "zarr"
    if form == "tiff" and image.form not in ("tiff", "ome-tiff"):
        raise InputError("a TIFF --output needs a TIFF INPUT; give a .zarr --output.")
    plan = make_blocks(image, halo=opts.halo, max_block_mb=opts.max_block_mb)
    if mask.ref is not None or opts.dry_run:
        # Before the fingerprint: it holds the mask's digest, so a mask saved again (from
        # napari, say) makes a different output, never a "complete" old one.
        plan = scan_holes(image, mask, plan, tile=opts.tile)
    spec, prov = _model_spec(opts)
    what = _what(opts, image.path, mask_path)
    fp = fingerprint(
        {
            **what,
            "ref": image.ref.path,
            "shape": image.shape,
            "axes": image.axes,
            "mask_digest": plan.mask_digest if mask.ref is not None else None,
            "model": prov,
            "tile": opts.tile,
            "form": form,
            "step": plan.step,
            "halo": plan.halo,
        }
    )
    if form == "tiff":
        work = out_path.with_name(out_path.name + ".rnon-partial.zarr")
        existing = _read_tiff_attrs(out_path) if out_path.exists() else _read_attrs(work)
        state_root = work
        status = _decide_existing(out_path if out_path.exists() else work, existing, fp, opts)
    else:
        work = out_path
        existing = _read_attrs(out_path)
        state_root = out_path
        status = _decide_existing(out_path, existing, fp, opts)
    blocks = plan.blocks
    n_hole = sum(1 for b in blocks if b.holes != 0)
    hole_planes = sum(max(0, b.hole_planes) for b in blocks)
    text = _plan_text(image, mask, mask_path, out_path, form, plan, status, opts, spec)
    report = _Reporter(out_path, form, len(blocks), image.planes, hole_planes, t_start)

    def estimate() -> tuple[float, str]:
        def probe() -> float:
            b = next(b for b in blocks if b.holes > 0)
            inp = get_inpainter(spec)
            return _probe_block(image, mask, b, inp, opts.stages) * max(1, b.hole_planes)

        def copy_probe() -> float:
            b = blocks[0]
            t0 = time.perf_counter()
            with open_array(image.ref) as src:
                np.asarray(src[b.slices()])
            return 2 * (time.perf_counter() - t0)

        est = _estimate(opts, probe, n_hole, len(blocks) - n_hole, copy_probe)
        return est, "from a probe of one plane; writes not timed"

    planned = (n_hole, len(blocks) - n_hole)
    early = _early_exit(opts, text, status, report, estimate, planned)
    if early is not None:
        return early
    attrs = _provenance(opts, prov, fp, {**what, "axes": image.axes, "output_form": form})
    state = state_root / STATE_DIR
    # A TIFF output left by the same command but not marked complete: start again.
    restart_tiff = status == "resume" and form == "tiff" and out_path.exists()
    fresh = status in ("new", "overwrite") or restart_tiff or not work.exists()
    markers = state / "done"
    done = set() if fresh or not markers.is_dir() else {p.name for p in markers.iterdir()}
    todo = [b for b in blocks if str(b.index) not in done]
    if status == "resume":
        opts.log(
            f"rnon-batch: resuming {out_path}: {len(blocks) - len(todo)} of {len(blocks)} "
            "blocks already done."
        )

    def start() -> BlockJob:
        if status == "overwrite":
            _remove(out_path)
            if form == "tiff":
                _remove(work)
        if restart_tiff:
            _remove(work)
        out_ref = (
            _create_output(image, work, form, attrs) if fresh else _output_ref(image, work, form)
        )
        markers.mkdir(parents=True, exist_ok=True)
        return BlockJob(image, mask, out_ref, str(state), spec, opts.stages)

    model = spec if any(b.holes != 0 for b in todo) else None
    results = _execute(opts, process_block, todo, "block", model=model, start=start)
    _finish(image, work, out_path, form, attrs, state)
    inpainted = sum(r["planes"] for r in results)
    summary = f"{len(results)} blocks run, {inpainted} planes inpainted"
    return _ran(opts, report, results, len(blocks) - len(todo), summary)


def _probe_block(image: ImageInfo, mask: MaskInfo, b: Block, inp: Any, stages: str) -> float:
    """Seconds to inpaint one plane of block ``b`` (read included)."""
    one = tuple(  # the window's first plane only
        s if d in (image.y, image.x, image.color_axis) else slice(s.start, s.start + 1)
        for d, s in enumerate(b.slices("window"))
    )
    t0 = time.perf_counter()
    data, m = _read_window(image, mask, one)
    if not m.any():
        return 0.0
    _inpaint_array(inp, image, data, m, stages)
    return time.perf_counter() - t0


def _fmt_s(s: float) -> str:
    return str(datetime.timedelta(seconds=round(s)))


def _plan_text(
    image: ImageInfo,
    mask: MaskInfo,
    mask_path: Path | None,
    out: Path,
    form: str,
    plan: Plan,
    status: str,
    opts: BatchOptions,
    spec: ModelSpec,
) -> str:
    blocks = plan.blocks
    lines = [
        f"input:  {image.path} [{image.form}] shape {image.shape} {image.dtype}, axes "
        f"{image.axes} (from {image.axes_source}), chunks {image.chunks}",
        f"mask:   {_mask_text(mask_path, opts)}"
        + (f" shape {mask.shape} (broadcast over leading axes)" if mask.broadcast else ""),
        f"output: {out} [{form}] ({status})",
        f"model:  {opts.model} (stages {opts.stages}, tile {opts.tile}, device {opts.device})",
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


def _create_output(image: ImageInfo, work: Path, form: str, attrs: dict[str, Any]) -> ArrayRef:
    import zarr

    if form == "ome-zarr":
        from ome_zarr.format import format_from_version
        from ome_zarr.writer import add_metadata, write_multiscales_metadata

        assert image.ome is not None
        ms = image.ome["multiscales"][0]
        fmt = format_from_version(str(image.ome["version"]))
        group = zarr.open_group(str(work), mode="w", zarr_format=image.zarr_format)
        src_root = Path(image.path)
        for path, _, _ in image.ome["levels"]:
            create_zarr_like(ArrayRef("zarr", str(src_root / path)), group, path)
        datasets = [
            {k: v for k, v in ds.items() if k in ("path", "coordinateTransformations")}
            for ds in ms["datasets"]
        ]
        write_multiscales_metadata(
            group,
            datasets=datasets,
            fmt=fmt,
            axes=ms.get("axes"),
            name=ms.get("name"),
            **({"metadata": ms["metadata"]} if ms.get("metadata") else {}),
        )
        if image.ome.get("omero"):
            add_metadata(group, {"omero": image.ome["omero"]})
        group.attrs[ATTRS_KEY] = attrs
        return ArrayRef("zarr", str(work / image.ome["levels"][0][0]))
    if form == "tiff":
        arr = zarr.create_array(
            store=str(work), shape=image.shape, dtype=image.dtype, chunks=image.chunks
        )
        arr.attrs[ATTRS_KEY] = attrs
        return ArrayRef("zarr", str(work))
    src = image.ref
    if image.component:
        group = zarr.open_group(str(work), mode="w", zarr_format=image.zarr_format)
        create_zarr_like(src, group, image.component)
        group.attrs[ATTRS_KEY] = attrs
        return ArrayRef("zarr", str(work / image.component))
    arr = create_zarr_like(src, work, None)
    arr.attrs[ATTRS_KEY] = attrs
    return ArrayRef("zarr", str(work))


def _output_ref(image: ImageInfo, work: Path, form: str) -> ArrayRef:
    if form == "ome-zarr":
        assert image.ome is not None
        return ArrayRef("zarr", str(work / image.ome["levels"][0][0]))
    if form == "zarr" and image.component:
        return ArrayRef("zarr", str(work / image.component))
    return ArrayRef("zarr", str(work))


def _set_complete(root: Path, attrs: dict[str, Any]) -> None:
    import zarr

    node = zarr.open(str(root), mode="r+")
    node.attrs[ATTRS_KEY] = {**attrs, "complete": True}


def _finish(
    image: ImageInfo, work: Path, out_path: Path, form: str, attrs: dict[str, Any], state: Path
) -> None:
    """Lower OME levels, the final TIFF, the ``complete`` flag; remove the markers."""
    if form == "ome-zarr":
        _write_pyramid(image, work)
        _set_complete(work, attrs)
        shutil.rmtree(state, ignore_errors=True)
    elif form == "tiff":
        _write_tiff(image, work, out_path, {**attrs, "complete": True})
        shutil.rmtree(work, ignore_errors=True)
    else:
        _set_complete(work, attrs)
        shutil.rmtree(state, ignore_errors=True)


def _write_pyramid(image: ImageInfo, work: Path) -> None:
    """Levels 1.. downsampled from the repaired level 0, as ome-zarr's default pyramid."""
    import dask
    import dask.array as da
    import zarr
    from ome_zarr.dask_utils import resize

    assert image.ome is not None
    group = zarr.open_group(str(work), mode="r+")
    levels = image.ome["levels"]
    for i in range(1, len(levels)):
        prev = da.from_zarr(group[levels[i - 1][0]])
        target = group[levels[i][0]]
        lvl = resize(
            prev, levels[i][1], order=1, mode="reflect", anti_aliasing=True, preserve_range=True
        )
        if np.dtype(image.dtype).kind in "iu":
            info = np.iinfo(image.dtype)
            lvl = da.clip(da.round(lvl), info.min, info.max)
        lvl = lvl.astype(image.dtype).rechunk(_write_chunks_of(target))
        with dask.config.set(scheduler="threads"):
            da.store(lvl, target, lock=False)


def _write_chunks_of(arr: Any) -> tuple[int, ...]:
    return tuple(int(c) for c in (getattr(arr, "shards", None) or arr.chunks))


def _write_tiff(image: ImageInfo, work: Path, out_path: Path, attrs: dict[str, Any]) -> None:
    """Stream the finished staging array into a TIFF like the input (tiles, photometric)."""
    import tifffile
    import zarr

    assert image.tiff is not None
    arr = zarr.open_array(str(work), mode="r")
    t = image.tiff
    color = image.color_axis is not None and image.color_axis == len(image.shape) - 1
    page_nd = 3 if color else 2
    lead = image.shape[: len(image.shape) - page_nd]
    tile = t["tile"]

    def pages() -> Iterator[np.ndarray]:
        for idx in np.ndindex(*lead):
            page = np.asarray(arr[idx])
            if tile is None:
                yield page
            else:
                for y0 in range(0, page.shape[0], tile[0]):
                    for x0 in range(0, page.shape[1], tile[1]):
                        yield page[y0 : y0 + tile[0], x0 : x0 + tile[1]]

    compression = {1: None, 8: "zlib", 32946: "zlib", 50000: "zstd"}.get(t["compression"], "zlib")
    meta: dict[str, Any] = {"axes": t["axes"]}
    if t["is_ome"]:
        meta["Description"] = json.dumps({ATTRS_KEY: attrs})
    else:
        meta[ATTRS_KEY] = attrs
    tmp = out_path.with_name(f".{out_path.name}.rnon-tmp.tif")
    tifffile.imwrite(
        tmp,
        pages(),
        shape=image.shape,
        dtype=image.dtype,
        tile=tuple(tile) if tile else None,
        photometric="rgb" if color else "minisblack",
        compression=compression,
        metadata=meta,
        software="rnon-batch",
        ome=bool(t["is_ome"]),
    )
    os.replace(tmp, out_path)


# --------------------------------------------------------------------------- files mode


def _run_files(
    opts: BatchOptions,
    kind: str,
    inp_path: Path,
    mask_path: Path | None,
    out_path: Path,
    image: ImageInfo | None,
    t_start: float,
) -> BatchReport:
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
    else:
        pairs = [(str(inp_path), str(mask_path) if mask_path else None)]
        if out_path.suffix.lower() not in (
            ".png",
            ".jpg",
            ".jpeg",
            ".bmp",
            ".gif",
            ".webp",
            ".tif",
            ".tiff",
        ):
            raise InputError(
                f"--output {str(out_path)!r}: give an image file name (e.g. "
                f"{inp_path.stem}.repaired{inp_path.suffix})."
            )
        units = [(str(inp_path), pairs[0][1], str(out_path))]
        manifest = out_path.with_name(out_path.name + STATE_DIR + ".json")
    # validate every pair before any work (shapes from headers)
    for s, m in pairs:
        _check_file_pair(s, m, opts.axes)
    spec, prov = _model_spec(opts)
    what = _what(opts, str(inp_path), mask_path)
    fp = fingerprint({**what, "model": prov, "tile": opts.tile, "axes": opts.axes, "kind": kind})
    existing = read_json(manifest)
    existing = existing.get(ATTRS_KEY) if existing else None
    if kind == "folder" and out_path.is_dir() and not any(out_path.iterdir()):
        status = "new"
    else:
        status = _decide_existing(out_path, existing, fp, opts)
    attrs = _provenance(opts, prov, fp, what)
    text = "\n".join(
        [
            f"input:  {inp_path} [{kind}], {len(units)} image(s)",
            f"mask:   {_mask_text(mask_path, opts)}",
            f"output: {out_path} ({status})",
            f"model:  {opts.model} (stages {opts.stages}, tile {opts.tile}, device {opts.device})",
        ]
    )
    report = _Reporter(out_path, kind, len(units), len(units), 0, t_start)

    def estimate() -> tuple[float, str]:
        def probe() -> float:
            inp = get_inpainter(spec)
            t0 = time.perf_counter()
            s, m, _ = units[0]
            data, info, mm = _load_file(s, m, opts.axes, opts.mask_value)
            if mm.any():
                _inpaint_array(inp, info, data, mm, opts.stages)
            return time.perf_counter() - t0

        return _estimate(opts, probe, len(units), 0, None), "from a probe of the first image"

    early = _early_exit(opts, text, status, report, estimate)
    if early is not None:
        return early
    todo = [u for u in units if not (status == "resume" and Path(u[2]).exists())]

    def start() -> FileJob:
        if status == "overwrite":
            _remove(out_path)
            _remove(manifest)
        if kind == "folder":
            out_path.mkdir(parents=True, exist_ok=True)
        else:
            out_path.parent.mkdir(parents=True, exist_ok=True)
        if status != "resume":
            manifest.write_text(json.dumps({ATTRS_KEY: attrs}, indent=1))
        return FileJob(opts.axes, spec, opts.stages, opts.mask_value, attrs)

    results = _execute(opts, process_file, todo, "image", model=spec, start=start)
    manifest.write_text(json.dumps({ATTRS_KEY: {**attrs, "complete": True}}, indent=1))
    return _ran(opts, report, results, len(units) - len(todo), f"{len(results)} image(s)")


def _check_file_pair(src: str, mask: str | None, axes: str | None) -> None:
    """Check one image/mask pair from headers where possible; raise InputError if wrong."""

    def shape_of(p: str, what: str) -> tuple[int, ...]:
        try:
            if p.lower().endswith((".tif", ".tiff")):
                import tifffile

                with tifffile.TiffFile(p) as tf:
                    return tuple(int(s) for s in tf.series[0].shape)
            import imageio.v3 as iio

            return tuple(int(s) for s in iio.improps(p).shape)
        except Exception as exc:
            raise InputError(f"cannot read {what} {p!r}: {exc}") from exc

    shape = shape_of(src, "image")
    ax, _ = _resolve_axes(None, "rule", axes, shape, image_file=True)
    if mask is None:
        return
    mshape = shape_of(mask, "mask")
    spatial = tuple(s for a, s in zip(ax, shape, strict=False) if not (a == "C" and s in (3, 4)))
    core = mshape
    if len(mshape) >= 3 and mshape[-1] in (3, 4) and mshape[:-1] == spatial[-(len(mshape) - 1) :]:
        core = mshape[:-1]
    if mshape == shape or (len(core) >= 2 and core == spatial[-len(core) :]):
        return
    raise InputError(
        f"mask {mask!r} has shape {mshape} but image {src!r} has shape {shape}; a mask must "
        "have the image's shape or its YX shape."
    )
