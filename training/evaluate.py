r"""Evaluate RNON against classical inpainting: ``python -m training.evaluate``.

The paper's Table 3 protocol (section 3.2), with the classical methods in the same table::

    python -m training.evaluate --weights default --data DIR --out DIR
    python -m training.evaluate --weights run/weights/repair_generator.safetensors \
        --stages repair --data val/ --per-bucket 25 --out eval/

Protocol (also written into ``docs/evaluation.md``):

Images
    Every file under ``--data`` (recursive, sorted by relative path, hidden entries skipped)
    that :func:`rnon_engine.train.data.read_image` reads (PNG, JPEG, TIFF, WebP, BMP; 8/16-bit;
    grayscale replicated to RGB, alpha dropped). Each is brought to ``size×size``: resized
    so its *shorter* side is ``size`` (OpenCV ``INTER_AREA`` when shrinking,
    ``INTER_CUBIC`` when enlarging), then centre-cropped, then quantised to 8 bits
    (``round(255·x)``). The 8-bit image is the ground truth, and what every method sees
    (mapped to [0, 1] as ``v/255`` by the engine), as with the paper's JPEG datasets.
    Unreadable files are reported and skipped.

Masks
    :func:`rnon_engine.train.masks.make_eval_masks`: ``per_bucket`` fixed, seeded irregular masks
    in each of the paper's four hole-ratio buckets (0.01,0.25], (0.25,0.40], (0.40,0.50],
    (0.50,0.60]; mask ``i`` of a bucket depends only on ``(seed, bucket, i)``. They are
    written to ``OUT/masks`` (or read from / written to ``--masks DIR``, which is checked
    against its manifest), so every method and every run sees the same masks.

Pairing
    Slot ``i`` of every bucket pairs mask ``i`` with image ``pair_index(i, n, per_bucket)``:
    with at least as many images as slots (``n >= per_bucket``) the images are spread
    evenly over the sorted list, ``floor(i·n / per_bucket)`` (every image when they are
    equal); with fewer images they are cycled, ``i mod n``, each time with a new mask.
    The same images are thus used in every bucket.

Methods and metrics
    Every method goes through :class:`rnon_engine.Inpainter` (the code path users get) on the
    damaged image (hole pixels set to 0). RNON and the classical methods return the input's
    own pixels outside the hole (composited); the only exception is stage 2 with
    ``--stage2-region image`` (the paper's whole-image stage 2), whose changes outside the
    hole are measured as they are, since that colour shift is what the option reproduces.
    Metrics, from :mod:`rnon_engine.metrics` (scikit-image), on the result in [0, 1] against
    the ground truth: **PSNR** over the whole image (``data_range=1``; a perfect result's
    infinite PSNR is capped at 100 dB before averaging), **SSIM** over the whole image
    (scikit-image defaults, 7×7 window, channels averaged), **L1** = mean absolute error
    over the hole pixels only (all three channels, in [0, 1] units). Means per method and
    bucket over the ``per_bucket`` slots.

Outputs in ``--out``: ``results.md`` (the table, the best method per bucket and whether
RNON beats the best classical method in both PSNR and SSIM in every bucket), ``results.csv``
(method × bucket × metric: mean, std, n), ``per_image.csv``, ``examples.png`` (damaged /
each method / ground truth for ``--examples`` cases, the worst RNON case first),
``run.json`` (command, date, weights and their SHA-256, images, settings) and ``masks/``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import logging
import math
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnon_engine.errors import InputError, RnonError

__all__ = [
    "CLASSICAL_LABELS",
    "MAX_PSNR",
    "METRICS",
    "EvalImage",
    "Record",
    "Sample",
    "build_parser",
    "build_samples",
    "choose_examples",
    "evaluate",
    "list_image_files",
    "load_images",
    "main",
    "pair_index",
    "prepare_image",
    "summarize",
    "verdict",
]

log = logging.getLogger(__name__)

#: PSNR of a perfect result (infinite) is capped here before averaging.
MAX_PSNR = 100.0
#: Metric names, in table order.
METRICS = ("psnr", "ssim", "l1")
#: Smallest accepted ``--size``.
MIN_SIZE = 32
#: Display names of the classical methods (keys as in ``--methods``).
CLASSICAL_LABELS = {
    "telea": "OpenCV Telea",
    "ns": "OpenCV Navier-Stokes",
    "biharmonic": "scikit-image biharmonic",
}

#: A method: ``fn(damaged uint8 H×W×3, hole bool H×W) -> uint8 H×W×3``.
MethodFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class EvalImage:
    """One evaluation image: its path relative to the data folder and its 8-bit pixels."""

    name: str
    pixels: np.ndarray  # (size, size, 3) uint8


@dataclass(frozen=True)
class Sample:
    """One evaluation case: an image paired with one mask of one bucket."""

    bucket: str
    slot: int
    image_index: int
    image_name: str
    truth: np.ndarray  # (H, W, 3) uint8
    hole: np.ndarray  # (H, W) bool, True = hole

    @property
    def damaged(self) -> np.ndarray:
        """The input every method gets: the truth with hole pixels set to 0."""
        out = self.truth.copy()
        out[self.hole] = 0
        return out


@dataclass(frozen=True)
class Record:
    """Scores of one method on one sample."""

    method: str
    bucket: str
    slot: int
    image: str
    hole_ratio: float
    psnr: float
    ssim: float
    l1: float
    changed_outside: float
    seconds: float


@dataclass(frozen=True)
class MethodSpec:
    """A method in the table: CSV key, display label, the function and whether it is RNON."""

    key: str
    label: str
    fn: MethodFn
    is_rnon: bool


# ------------------------------------------------------------------------------ images


def list_image_files(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted, hidden entries skipped).

    Raises:
        InputError: The folder does not exist or holds no image file.
    """
    from rnon_engine.train.data import IMAGE_EXTENSIONS, list_images

    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"--data {root} is not a folder; give a folder of images")
    exts = {e.lower() for e in IMAGE_EXTENSIONS}
    found = list_images(root)
    if not found:
        raise InputError(
            f"no images found under {root} (looked recursively for {', '.join(sorted(exts))})"
        )
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def prepare_image(image: np.ndarray, size: int) -> np.ndarray:
    """Bring an ``H×W×3`` float image in [0, 1] to ``size×size`` 8-bit RGB.

    Resize so that the shorter side is ``size`` (``INTER_AREA`` when shrinking,
    ``INTER_CUBIC`` when enlarging, clipped to [0, 1]), centre-crop the longer side
    (the extra pixel of an odd excess goes to the bottom/right), quantise ``round(255·x)``.

    Args:
        image: ``(H, W, 3)`` float in [0, 1] (as from :func:`rnon_engine.train.data.read_image`).
        size: Side of the result.

    Returns:
        ``(size, size, 3)`` uint8.
    """
    import cv2

    image = np.asarray(image, dtype=np.float32)
    h, w = image.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        image = cv2.resize(image, (nw, nh), interpolation=interp)
        if image.ndim == 2:
            image = image[..., None]
    top, left = (nh - size) // 2, (nw - size) // 2
    crop = np.clip(image[top : top + size, left : left + size], 0.0, 1.0)
    return np.round(crop * 255.0).astype(np.uint8)


def load_images(folder: str | Path, size: int) -> tuple[list[EvalImage], list[str]]:
    """Read and prepare every image under ``folder``; returns (images, skipped messages).

    Raises:
        InputError: No image under the folder could be read.
    """
    from rnon_engine.train.data import read_image

    root = Path(folder)
    images: list[EvalImage] = []
    skipped: list[str] = []
    for path in list_image_files(root):
        name = path.relative_to(root).as_posix()
        try:
            pixels = prepare_image(read_image(path), size)
        except RnonError as exc:
            log.warning("skipping %s: %s", path, exc)
            skipped.append(f"{name}: {exc}")
            continue
        images.append(EvalImage(name, pixels))
    if not images:
        raise InputError(f"none of the image files under {root} could be read: {skipped[:3]}")
    return images, skipped


# ------------------------------------------------------------------------------ samples


def pair_index(slot: int, n_images: int, per_bucket: int) -> int:
    """Index of the image paired with mask ``slot`` (see the module doc: spread or cycle)."""
    if n_images >= per_bucket:
        return (slot * n_images) // per_bucket
    return slot % n_images


def build_samples(
    images: Sequence[EvalImage], masks: Mapping[str, Sequence[np.ndarray]]
) -> list[Sample]:
    """Pair images with the masks of every bucket (bucket-major order).

    Raises:
        InputError: A mask's shape differs from the images'.
    """
    samples = []
    for bucket, ms in masks.items():
        for slot, hole in enumerate(ms):
            idx = pair_index(slot, len(images), len(ms))
            img = images[idx]
            if hole.shape != img.pixels.shape[:2]:
                raise InputError(
                    f"mask {bucket}/{slot} is {hole.shape} but the images are "
                    f"{img.pixels.shape[:2]}; use masks made for this --size"
                )
            samples.append(Sample(bucket, slot, idx, img.name, img.pixels, np.asarray(hole, bool)))
    return samples


# ------------------------------------------------------------------------------ scoring


def evaluate(
    samples: Sequence[Sample],
    methods: Sequence[MethodSpec],
    *,
    progress: bool = True,
) -> list[Record]:
    """Run every method on every sample and score it.

    Args:
        samples: From :func:`build_samples`.
        methods: The methods, in table order.
        progress: Show a tqdm progress bar.

    Returns:
        One :class:`Record` per (method, sample), method-major.
    """
    from tqdm import tqdm

    from rnon_engine.metrics import score_repair

    records = []
    with tqdm(
        total=len(samples) * len(methods), desc="evaluate", unit="img", disable=not progress
    ) as bar:
        for spec in methods:
            bar.set_postfix_str(spec.key)
            for s in samples:
                damaged = s.damaged
                t0 = time.perf_counter()
                result = spec.fn(damaged, s.hole.copy())
                dt = time.perf_counter() - t0
                sc = score_repair(s.truth, result, s.hole, max_psnr=MAX_PSNR)
                records.append(
                    Record(
                        spec.key,
                        s.bucket,
                        s.slot,
                        s.image_name,
                        float(s.hole.mean()),
                        sc["psnr"],
                        sc["ssim"],
                        sc["l1"],
                        sc["changed_outside"],
                        dt,
                    )
                )
                bar.update(1)
    return records


def summarize(records: Sequence[Record]) -> list[dict[str, Any]]:
    """Mean, standard deviation and count per method × bucket × metric (record order)."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        groups.setdefault((r.method, r.bucket), []).append(r)
    rows = []
    for (method, bucket), rs in groups.items():
        for metric in METRICS:
            vals = np.array([getattr(r, metric) for r in rs], dtype=np.float64)
            rows.append(
                {
                    "method": method,
                    "bucket": bucket,
                    "metric": metric,
                    "mean": float(vals.mean()),
                    "std": float(vals.std()),
                    "n": int(vals.size),
                }
            )
    return rows


def _means(summary: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str], float]:
    return {(r["method"], r["bucket"], r["metric"]): r["mean"] for r in summary}


def verdict(
    summary: Sequence[Mapping[str, Any]],
    rnon_key: str,
    classical_keys: Sequence[str],
    buckets: Sequence[str],
) -> tuple[bool, list[str]]:
    """Does ``rnon_key`` beat the best classical method in both PSNR and SSIM in every bucket?

    Returns:
        ``(beats_everywhere, shortfalls)``; each shortfall names the bucket, the metric and
        the best classical method with its value.
    """
    means = _means(summary)
    short = []
    for b in buckets:
        for metric in ("psnr", "ssim"):
            best = max(classical_keys, key=lambda k: means[(k, b, metric)])
            ours, theirs = means[(rnon_key, b, metric)], means[(best, b, metric)]
            if not ours > theirs:
                fmt = "{:.2f}" if metric == "psnr" else "{:.4f}"
                short.append(
                    f"{b}: {metric.upper()} {fmt.format(ours)} vs {fmt.format(theirs)} ({best})"
                )
    return not short, short


# ------------------------------------------------------------------------------ outputs


def _fmt_cell(means: Mapping[tuple[str, str, str], float], key: str, bucket: str) -> str:
    return (
        f"{means[(key, bucket, 'psnr')]:.2f} / {means[(key, bucket, 'ssim')]:.4f} / "
        f"{means[(key, bucket, 'l1')]:.4f}"
    )


def results_markdown(
    summary: Sequence[Mapping[str, Any]],
    records: Sequence[Record],
    methods: Sequence[MethodSpec],
    buckets: Sequence[str],
    meta: Mapping[str, Any],
) -> str:
    """The Markdown report: settings, the table, best per bucket and the RNON verdict."""
    means = _means(summary)
    labels = {m.key: m.label for m in methods}
    lines = ["# Evaluation (paper Table 3 protocol)", ""]
    lines.append(f"- Command: `{meta['command']}`")
    lines.append(f"- Date: {meta['date']}")
    for role, info in meta["weights"].items():
        lines.append(f"- RNON {role} weights: `{info['path']}` (sha256 `{info['sha256']}`)")
    lines.append(f"- Stage 2: {meta['stage2_note']}")
    lines.append(
        f"- Images: {meta['n_images']} from `{meta['data']}` ({meta['n_skipped']} unreadable, "
        f"skipped), {meta['size']}×{meta['size']}; masks: {meta['per_bucket']} per bucket, "
        f"seed {meta['seed']} (`{meta['masks']}`); {len(records) // max(len(methods), 1)} "
        "cases per method"
    )
    lines += [
        "- Cells: PSNR (dB, whole image) / SSIM (whole image) / L1 (mean absolute error in "
        "the hole, [0, 1] units); means over the bucket's cases. Higher PSNR and SSIM, lower "
        "L1 are better.",
        "",
    ]
    head = "| method | " + " | ".join(f"({b.replace('-', ', ')}]" for b in buckets) + " |"
    lines += [head, "|---|" + "---|" * len(buckets)]
    for m in methods:
        cells = " | ".join(_fmt_cell(means, m.key, b) for b in buckets)
        lines.append(f"| {m.label} | {cells} |")
    lines.append("")
    lines.append("Best per bucket (PSNR / SSIM / L1):")
    lines.append("")
    keys = [m.key for m in methods]
    for b in buckets:
        best_p = max(keys, key=lambda k: means[(k, b, "psnr")])
        best_s = max(keys, key=lambda k: means[(k, b, "ssim")])
        best_l = min(keys, key=lambda k: means[(k, b, "l1")])
        lines.append(
            f"- ({b.replace('-', ', ')}]: {labels[best_p]} / {labels[best_s]} / {labels[best_l]}"
        )
    lines.append("")
    classical = [m.key for m in methods if not m.is_rnon]
    for m in methods:
        if not m.is_rnon or not classical:
            continue
        ok, short = verdict(summary, m.key, classical, buckets)
        if ok:
            lines.append(
                f"**{m.label} beats the best classical method in both PSNR and SSIM in every "
                "bucket: YES.**"
            )
        else:
            lines.append(
                f"**{m.label} beats the best classical method in both PSNR and SSIM in every "
                f"bucket: NO** (short in {'; '.join(short)})."
            )
        lines.append("")
    times: dict[str, list[float]] = {}
    changed: dict[str, list[float]] = {}
    for r in records:
        times.setdefault(r.method, []).append(r.seconds)
        changed.setdefault(r.method, []).append(r.changed_outside)
    lines.append(
        "Mean time per image (this machine, may be shared) and the fraction of known pixels "
        "each method changed:"
    )
    lines.append("")
    lines += ["| method | s / image | known pixels changed |", "|---|---|---|"]
    for m in methods:
        lines.append(
            f"| {m.label} | {np.mean(times[m.key]):.3f} | {100 * np.mean(changed[m.key]):.2f} % |"
        )
    lines.append("")
    return "\n".join(lines)


def write_outputs(
    out: Path,
    records: Sequence[Record],
    summary: Sequence[Mapping[str, Any]],
    methods: Sequence[MethodSpec],
    buckets: Sequence[str],
    meta: Mapping[str, Any],
) -> None:
    """Write results.md, results.csv, per_image.csv and run.json into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    labels = {m.key: m.label for m in methods}
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(
            f, fieldnames=["method", "label", "bucket", "metric", "mean", "std", "n"]
        )
        w.writeheader()
        for row in summary:
            w.writerow({**row, "label": labels[row["method"]]})
    with open(out / "per_image.csv", "w", newline="") as f:
        fields = list(Record.__dataclass_fields__)
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in records:
            w.writerow(asdict(r))
    (out / "results.md").write_text(results_markdown(summary, records, methods, buckets, meta))
    (out / "run.json").write_text(json.dumps(meta, indent=1, default=str))


def choose_examples(
    records: Sequence[Record],
    samples: Sequence[Sample],
    rnon_key: str | None,
    classical_keys: Sequence[str],
    k: int,
) -> list[int]:
    """Indices into ``samples`` for the figure, chosen deterministically.

    First RNON's worst case (lowest PSNR), then the case where it trails the best classical
    method most (PSNR), then the median case of each bucket in turn, then each bucket's
    quartiles, without repeats.
    """
    if k <= 0 or not samples:
        return []
    index = {(s.bucket, s.slot): i for i, s in enumerate(samples)}
    key = rnon_key or (classical_keys[0] if classical_keys else records[0].method)
    psnr = {(r.bucket, r.slot): r.psnr for r in records if r.method == key}
    order: list[int] = []
    ranked = sorted(psnr, key=lambda bs: (psnr[bs], index[bs]))
    order.append(index[ranked[0]])
    if rnon_key is not None and classical_keys:
        best_cl: dict[tuple[str, int], float] = {}
        for r in records:
            if r.method in classical_keys:
                bs = (r.bucket, r.slot)
                best_cl[bs] = max(best_cl.get(bs, -math.inf), r.psnr)
        gap = sorted(psnr, key=lambda bs: (psnr[bs] - best_cl[bs], index[bs]))
        order.append(index[gap[0]])
    buckets = list(dict.fromkeys(s.bucket for s in samples))
    per_bucket = {
        b: sorted((bs for bs in psnr if bs[0] == b), key=lambda bs: (psnr[bs], index[bs]))
        for b in buckets
    }
    for frac in (0.5, 0.25, 0.75, 0.0, 1.0):
        for b in buckets:
            lst = per_bucket[b]
            if lst:
                order.append(index[lst[min(len(lst) - 1, int(frac * (len(lst) - 1) + 0.5))]])
    order += range(len(samples))
    chosen = list(dict.fromkeys(order))
    return chosen[:k]


def write_examples(
    path: Path,
    samples: Sequence[Sample],
    methods: Sequence[MethodSpec],
    chosen: Sequence[int],
    records: Sequence[Record],
) -> Path | None:
    """examples.png: rows of damaged / each method / ground truth (re-running the methods)."""
    if not chosen:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(r.method, r.bucket, r.slot): r for r in records}
    ncol = len(methods) + 2
    fig, axes = plt.subplots(
        len(chosen), ncol, figsize=(2.1 * ncol, 2.35 * len(chosen)), squeeze=False
    )
    for row, i in enumerate(chosen):
        s = samples[i]
        shown = s.damaged
        shown[s.hole] = 255
        cells = [(shown, f"damaged {s.bucket}\nhole {100 * s.hole.mean():.0f} %")]
        for m in methods:
            r = by[(m.key, s.bucket, s.slot)]
            cells.append(
                (m.fn(s.damaged, s.hole.copy()), f"{m.label}\n{r.psnr:.2f} dB / {r.ssim:.3f}")
            )
        cells.append((s.truth, f"ground truth\n{Path(s.image_name).name[:22]}"))
        for col, (img, title) in enumerate(cells):
            ax = axes[row][col]
            ax.imshow(img)
            ax.set_title(title, fontsize=6.5)
            ax.set_axis_off()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------ command line


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m training.evaluate",
        description="Evaluate RNON weights and the classical methods with the paper's "
        "Table 3 protocol (PSNR, SSIM, L1 per hole-ratio bucket on fixed seeded masks).",
    )
    p.add_argument(
        "--weights", required=True, help="'default' or a repair-generator .safetensors file"
    )
    p.add_argument("--stage2", type=Path, help="optimize-generator file (default: see inference)")
    p.add_argument("--data", required=True, type=Path, help="folder of images (recursive)")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    p.add_argument(
        "--per-bucket",
        type=int,
        help="masks (cases) per bucket (default: the number of images)",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--seed", type=int, default=0, help="seed of the mask set (default 0)")
    p.add_argument(
        "--masks",
        type=Path,
        help="evaluation mask folder to reuse (made there if absent; default OUT/masks, fresh)",
    )
    p.add_argument("--stages", choices=["both", "repair"], default="both")
    p.add_argument("--stage2-region", choices=["band", "image"], default="band")
    p.add_argument(
        "--compare-stage2-region",
        action="store_true",
        help="evaluate stage 2 on the band and on the whole image (two RNON rows)",
    )
    p.add_argument(
        "--methods",
        default="telea,ns,biharmonic",
        help="comma-separated classical methods (default telea,ns,biharmonic; '' for none)",
    )
    p.add_argument("--examples", type=int, default=6, help="rows in examples.png (default 6)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda...")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _check_args(args: argparse.Namespace) -> list[str]:
    if args.size < MIN_SIZE:
        raise InputError(f"--size must be at least {MIN_SIZE} pixels, got {args.size}")
    if args.per_bucket is not None and args.per_bucket < 1:
        raise InputError(f"--per-bucket must be at least 1, got {args.per_bucket}")
    if args.examples < 0:
        raise InputError(f"--examples must be 0 or more, got {args.examples}")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be at least 1, got {args.threads}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in CLASSICAL_LABELS]
    if unknown:
        raise InputError(
            f"unknown method(s) {unknown} in --methods; choose from {', '.join(CLASSICAL_LABELS)}"
        )
    if args.weights in CLASSICAL_LABELS:
        raise InputError(
            f"--weights {args.weights!r} is a classical method; --weights takes 'default' or "
            "an RNON weights file (classical methods go in --methods)"
        )
    if args.compare_stage2_region and args.stages == "repair":
        raise InputError("--compare-stage2-region needs --stages both (stage 2 must run)")
    return list(dict.fromkeys(methods))


def _load_rnon(args: argparse.Namespace) -> Any:
    """The RNON inpainter (band or the requested region)."""
    from rnon_engine.inference.inpainter import Inpainter

    return Inpainter.from_pretrained(
        args.weights,
        device=args.device,
        stage2=args.stage2,
        threads=args.threads,
        stage2_region=args.stage2_region,
    )


def _rnon_methods(args: argparse.Namespace, inp: Any) -> tuple[list[MethodSpec], str]:
    """RNON rows and the sentence that says what stage 2 did."""
    from rnon_engine.inference.inpainter import Inpainter

    has2 = inp.optimize is not None
    if args.stages == "repair":
        note = "not run (--stages repair)" + (
            "; the weights have a stage 2" if has2 else "; the weights have none"
        )
        return [MethodSpec("rnon", "RNON (repair only)", _inpaint_fn(inp, "repair"), True)], note
    if not has2:
        if args.compare_stage2_region:
            raise InputError(
                "--compare-stage2-region: the weights have no stage 2 (no optimize generator "
                "found); pass --stage2 FILE"
            )
        note = "not run: **the weights have no stage 2** (no optimize generator found)"
        label = "RNON (repair only, no stage 2 in weights)"
        return [MethodSpec("rnon", label, _inpaint_fn(inp, "both"), True)], note
    regions = ["band", "image"] if args.compare_stage2_region else [args.stage2_region]
    specs = []
    for region in regions:
        if region == inp.stage2_region:
            this = inp
        else:
            this = Inpainter(
                inp.repair,
                inp.optimize,
                device=inp.device,
                tile_size=inp.tile_size,
                stage2_region=region,
                name=inp.name,
                provenance=inp.provenance,
            )
        key = "rnon" if len(regions) == 1 else f"rnon-{region}"
        label = (
            "RNON (repair + optimize, band)"
            if region == "band"
            else "RNON (repair + optimize, whole image: paper)"
        )
        specs.append(MethodSpec(key, label, _inpaint_fn(this, "both"), True))
    note = "run, on " + (
        "the band around the holes, composited (the engine's default)"
        if regions == ["band"]
        else "the whole image, not composited (the paper's behaviour)"
        if regions == ["image"]
        else "both the band (composited) and the whole image (the paper's) as two rows"
    )
    return specs, note


def _inpaint_fn(inp: Any, stages: str) -> MethodFn:
    def fn(damaged: np.ndarray, hole: np.ndarray) -> np.ndarray:
        return inp.inpaint(damaged, hole, stages=stages)

    return fn


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit code (2 for a user error)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        return _run(args, argv)
    except RnonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from rnon_engine.inference.inpainter import Inpainter
    from rnon_engine.train.masks import BUCKETS, get_eval_masks, make_eval_masks, save_eval_masks

    classical = _check_args(args)
    inp = _load_rnon(args)
    rnon_specs, stage2_note = _rnon_methods(args, inp)
    images, skipped = load_images(args.data, args.size)
    per_bucket = args.per_bucket or len(images)
    if args.masks is not None:
        masks_dir = args.masks
        masks = get_eval_masks(masks_dir, args.size, per_bucket, args.seed)
    else:
        masks_dir = args.out / "masks"
        masks = make_eval_masks(args.size, per_bucket, args.seed)
        save_eval_masks(masks_dir, masks, seed=args.seed)
    samples = build_samples(images, masks)
    methods = rnon_specs + [
        MethodSpec(m, CLASSICAL_LABELS[m], _inpaint_fn(Inpainter.from_pretrained(m), "both"), False)
        for m in classical
    ]
    weights = {
        role: {"path": path, "sha256": inp.provenance["sha256"][role]}
        for role, path in inp.provenance["weights"].items()
    }
    cmd = "python -m training.evaluate " + shlex.join(sys.argv[1:] if argv is None else argv)
    meta: dict[str, Any] = {
        "command": cmd,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "weights": weights,
        "stages": args.stages,
        "stage2_note": stage2_note,
        "stage2_present": inp.optimize is not None,
        "data": str(args.data),
        "n_images": len(images),
        "n_skipped": len(skipped),
        "skipped": skipped,
        "images": [im.name for im in images],
        "size": args.size,
        "per_bucket": per_bucket,
        "seed": args.seed,
        "masks": str(masks_dir),
        "pairing": "slot i -> image floor(i*n/per_bucket) if n >= per_bucket else i mod n",
        "methods": {m.key: m.label for m in methods},
        "device": str(inp.device),
        "protocol": "PSNR whole image (capped at 100 dB), SSIM whole image (skimage, 7x7), "
        "L1 mean absolute error in the hole; [0,1] units; 8-bit images",
    }
    from rnon_engine import __version__

    meta["package_version"] = __version__
    print(f"RNON stage 2: {stage2_note}", file=sys.stderr)
    records = evaluate(samples, methods, progress=not args.no_progress)
    summary = summarize(records)
    buckets = list(BUCKETS)
    write_outputs(args.out, records, summary, methods, buckets, meta)
    rnon_key = rnon_specs[0].key if rnon_specs else None
    chosen = choose_examples(records, samples, rnon_key, classical, args.examples)
    write_examples(args.out / "examples.png", samples, methods, chosen, records)
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
