"""Stacks (issue 17): the ``neighbours`` fill vs 2-D methods on synthetic stacks.

Each validation photograph of the corpus (``manifest.json``: ``split == "val"``, ``kind ==
"photo"``; no training picture is scored) is made grayscale, resized so that its shorter
side is ``--side`` px and centre-cropped to a square, and turned into a stack of
``2*K + 1`` planes (:func:`make_stack`) in one of three regimes:

- ``a near-equal``: every plane is the picture shifted by up to 0.5 px, with an intensity
  drift of up to ±3 % per plane and Gaussian noise (σ = 0.01);
- ``b motion``: shifts up to 4 px, rotations up to 2° and 2 % zoom per plane, plus the
  drift and noise of ``a``;
- ``c same holes``: as ``a``, but the holes lie in every plane (no information in the
  neighbours: ``neighbours`` falls back to its 2-D method, biharmonic).

The stacks come from :func:`rnon_engine.train.stacks.benchmark_stack` (the stack model's
training data is built by the same module, from training pictures only). The middle plane
gets a hole mask from each of the paper's four ratio buckets
(:func:`rnon_engine.train.masks.bucket_mask`, a transient defect: only that plane, except in
``c``). It is repaired by ``neighbours`` (``K`` planes each side, the whole stack given), by
``neighbours`` after aligning the planes (``aligned``:
:func:`rnon_engine.inference.stack_inputs.aligned_fill_plane`), by the learned stack model
(``stack``: ``Inpainter.from_pretrained("stack")``, or ``--stack-weights``), and by 2-D
methods on the middle plane alone (``telea``, ``biharmonic``, the packaged ``default``
model; in ``c`` this equals repairing every plane). ``--extra-regimes`` scores two regimes
where neighbours disagree with the plane instead (``d`` focus change: the nearest plane on
each side blurred; ``e`` unrelated side: the planes before the middle one show the next
validation photograph). Reported: PSNR and SSIM over the hole
pixels of the middle plane against the clean plane (before noise), mean ± standard error
over pictures, per regime and bucket; ``best 2-D`` is the best 2-D method's mean per cell.

    python benchmarks/stack_context.py --corpus <corpus> --limit 20 --side 192 \
        --figure docs/images/stack_repair.png
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

from rnon_engine import Inpainter
from rnon_engine.inference.stack_context import prefill
from rnon_engine.inference.stack_inputs import aligned_fill_plane
from rnon_engine.train.masks import BUCKETS, bucket_mask
from rnon_engine.train.stacks import BENCH_REGIMES as REGIMES
from rnon_engine.train.stacks import EXTRA_REGIMES, benchmark_stack

METHODS_2D = ("telea", "biharmonic", "default")
STACK_METHODS = ("neighbours", "aligned", "stack")


def load_gray(path: Path, side: int) -> np.ndarray:
    """Grayscale float32 [0, 1], shorter side ``side`` px, centre-cropped square."""
    im = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if im is None:
        raise SystemExit(f"cannot read {path}")
    s = side / min(im.shape)
    im = cv2.resize(im, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    y0, x0 = (im.shape[0] - side) // 2, (im.shape[1] - side) // 2
    return im[y0 : y0 + side, x0 : x0 + side].astype(np.float32) / 255.0


def aligned_neighbours(
    stack: np.ndarray, mask: np.ndarray, k: int, fallback: Inpainter
) -> np.ndarray:
    """``neighbours`` with the planes aligned first, ``fallback`` where no plane knows."""
    fill = prefill(stack, mask, k, filler=aligned_fill_plane, warn=False)
    if not fill.residual.any():
        return fill.image
    return fallback.inpaint(
        fill.image, fill.residual, channel_axis=fill.channel_axis, context_planes=0
    )


def hole_ssim(out: np.ndarray, ref: np.ndarray, hole: np.ndarray) -> float:
    """Mean SSIM (7×7 windows, data range 1) over the hole pixels."""
    from skimage.metrics import structural_similarity

    _, smap = structural_similarity(
        out.astype(np.float64), ref.astype(np.float64), data_range=1.0, full=True
    )
    return float(smap[hole].mean())


def hole_psnr(out: np.ndarray, ref: np.ndarray, hole: np.ndarray) -> float:
    mse = float(np.mean((out[hole].astype(np.float64) - ref[hole]) ** 2))
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def write_figure(
    path: Path, stack: np.ndarray, hole: np.ndarray, k: int, fills: dict[str, np.ndarray]
) -> None:
    """A row of panels: the plane before, the damaged plane, the one after, and the fills."""
    damaged = stack[k].copy()
    damaged[hole] = 1.0
    panels = [
        ("plane z-1", stack[k - 1]),
        ("plane z, damaged", damaged),
        ("plane z+1", stack[k + 1]),
    ]
    panels += [(f"{m}", fills[m]) for m in ("default", "neighbours", "stack") if m in fills]
    tiles = []
    for title, im in panels:
        tile = cv2.cvtColor((np.clip(im, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        tile = cv2.copyMakeBorder(tile, 22, 4, 4, 4, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        cv2.putText(tile, title, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        tiles.append(tile)
    gray = cv2.cvtColor(np.hstack(tiles), cv2.COLOR_BGR2GRAY)  # a small file
    cv2.imwrite(str(path), gray, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True, type=Path)
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--side", type=int, default=192)
    ap.add_argument("--k", type=int, default=2, help="context planes each side")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    ap.add_argument(
        "--stack-weights", help="stack model weights (default: the packaged ones)"
    )
    ap.add_argument(
        "--extra-regimes",
        action="store_true",
        help="score the regimes where neighbours disagree (d focus change, e unrelated "
        "side) instead of a, b, c",
    )
    ap.add_argument(
        "--figure",
        type=Path,
        help="also write a before/after PNG of the first picture (regime b, bucket 0.25-0.40)",
    )
    args = ap.parse_args()

    manifest = json.loads((args.corpus / "manifest.json").read_text())
    pics = [
        p for p in manifest["pictures"] if p.get("split") == "val" and p.get("kind") == "photo"
    ][: args.limit]
    if not pics:
        raise SystemExit("no validation photographs in the manifest")
    inps = {m: Inpainter.from_pretrained(m, device="cpu") for m in METHODS_2D}
    neigh = Inpainter.from_pretrained("neighbours")
    stack_inp = Inpainter.from_pretrained("stack", device="cpu", stack_weights=args.stack_weights)
    methods = (*STACK_METHODS, *METHODS_2D)
    scores: dict[tuple[str, str, str], list[float]] = {}
    ssims: dict[tuple[str, str, str], list[float]] = {}
    secs: dict[str, float] = dict.fromkeys(methods, 0.0)
    rng = np.random.default_rng(args.seed)
    regimes = EXTRA_REGIMES if args.extra_regimes else REGIMES
    for i, pic in enumerate(pics):
        picture = load_gray(args.corpus / pic["written"], args.side)
        other = load_gray(args.corpus / pics[(i + 1) % len(pics)]["written"], args.side)
        for regime in regimes:
            for bucket in BUCKETS:
                stack, clean = benchmark_stack(picture, regime, args.k, rng, other)
                hole = bucket_mask(picture.shape, rng, bucket)
                mask = np.zeros(stack.shape, bool)
                if regime.startswith("c"):
                    mask[:] = hole
                else:
                    mask[args.k] = hole
                fills = {}
                for m in STACK_METHODS:
                    t = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        if m == "aligned":
                            out = aligned_neighbours(stack, mask, args.k, inps["biharmonic"])
                        else:
                            inp = neigh if m == "neighbours" else stack_inp
                            out = inp.inpaint(stack, mask, context_planes=args.k)
                    fills[m] = out[args.k]
                    secs[m] += time.perf_counter() - t
                for m, inp in inps.items():
                    t = time.perf_counter()
                    fills[m] = inp.inpaint(stack[args.k], hole)
                    secs[m] += time.perf_counter() - t
                for m, out in fills.items():
                    scores.setdefault((regime, bucket, m), []).append(
                        hole_psnr(out, clean[args.k], hole)
                    )
                    ssims.setdefault((regime, bucket, m), []).append(
                        hole_ssim(out, clean[args.k], hole)
                    )
                if (
                    args.figure
                    and pic is pics[0]
                    and regime == REGIMES[1]
                    and bucket == "0.25-0.40"
                ):
                    write_figure(args.figure, stack, hole, args.k, fills)
        print(f"done {pic['written']}", flush=True)

    weights = args.stack_weights or "packaged"
    lines = [
        f"Hole PSNR (dB) of the middle plane, mean ± standard error over {len(pics)} "
        f"validation photographs ({args.side}×{args.side} px, grayscale), K = {args.k}, "
        f"{2 * args.k + 1} planes, seed {args.seed}; stack weights: {weights}. "
        "Δ2-D: stack − best 2-D method; Δn: stack − neighbours.",
        "",
        "| regime | bucket | " + " | ".join(methods) + " | best 2-D | Δ2-D | Δn |",
        "|---|---|" + "---|" * (len(methods) + 3),
    ]

    def mean(key: tuple[str, str, str], table: dict) -> float:
        return float(np.mean(table[key]))

    for regime in regimes:
        for bucket in BUCKETS:
            cells = []
            for m in methods:
                v = np.array(scores[(regime, bucket, m)])
                se = v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else float("nan")
                cells.append(f"{v.mean():.2f} ± {se:.2f}")
            best = max(mean((regime, bucket, m), scores) for m in METHODS_2D)
            st = mean((regime, bucket, "stack"), scores)
            nb = mean((regime, bucket, "neighbours"), scores)
            lines.append(
                f"| {regime} | {bucket} | " + " | ".join(cells)
                + f" | {best:.2f} | {st - best:+.2f} | {st - nb:+.2f} |"
            )
    lines += [
        "",
        "Hole SSIM of the middle plane (mean):",
        "",
        "| regime | bucket | " + " | ".join(methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for regime in regimes:
        for bucket in BUCKETS:
            cells = [f"{mean((regime, bucket, m), ssims):.3f}" for m in methods]
            lines.append(f"| {regime} | {bucket} | " + " | ".join(cells) + " |")
    lines += ["", "Time (s, summed): " + ", ".join(f"{m} {secs[m]:.1f}" for m in methods)]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
