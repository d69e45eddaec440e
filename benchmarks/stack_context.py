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

The middle plane gets a hole mask from each of the paper's four ratio buckets
(:func:`rnon_engine.train.masks.bucket_mask`, a transient defect: only that plane, except in
``c``). It is repaired by ``neighbours`` (``K`` planes each side, the whole stack given) and
by 2-D methods on the middle plane alone (``telea``, ``biharmonic``, the packaged
``default`` model; in ``c`` this equals repairing every plane). Reported: PSNR over the hole
pixels of the middle plane against the clean plane (before noise), mean ± standard error
over pictures, per regime and bucket.

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
from rnon_engine.train.masks import BUCKETS, bucket_mask

REGIMES = ("a near-equal", "b motion", "c same holes")
METHODS_2D = ("telea", "biharmonic", "default")


def load_gray(path: Path, side: int) -> np.ndarray:
    """Grayscale float32 [0, 1], shorter side ``side`` px, centre-cropped square."""
    im = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if im is None:
        raise SystemExit(f"cannot read {path}")
    s = side / min(im.shape)
    im = cv2.resize(im, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    y0, x0 = (im.shape[0] - side) // 2, (im.shape[1] - side) // 2
    return im[y0 : y0 + side, x0 : x0 + side].astype(np.float32) / 255.0


def make_stack(
    picture: np.ndarray, regime: str, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A ``(2k+1)×H×W`` stack around ``picture`` (the middle plane) in a regime.

    Returns:
        ``(noisy stack float32, clean stack float32)``; the middle clean plane is
        ``picture`` times its drift.
    """
    h, w = picture.shape
    clean = []
    for z in range(2 * k + 1):
        if z == k:
            plane = picture.copy()
        else:
            if regime.startswith("b"):
                shift, angle, zoom = 4.0, 2.0, 0.02
            else:
                shift, angle, zoom = 0.5, 0.0, 0.0
            mat = cv2.getRotationMatrix2D(
                (w / 2, h / 2), rng.uniform(-angle, angle), 1 + rng.uniform(-zoom, zoom)
            )
            mat[:, 2] += rng.uniform(-shift, shift, 2)
            plane = cv2.warpAffine(
                picture, mat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
            )
        clean.append(plane * (1 + rng.uniform(-0.03, 0.03)))
    clean_st = np.clip(np.stack(clean), 0, 1).astype(np.float32)
    noisy = clean_st + rng.normal(0, 0.01, clean_st.shape).astype(np.float32)
    return np.clip(noisy, 0, 1).astype(np.float32), clean_st


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
    panels += [(f"{m}", fills[m]) for m in ("default", "neighbours")]
    tiles = []
    for title, im in panels:
        tile = cv2.cvtColor((np.clip(im, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        tile = cv2.copyMakeBorder(tile, 22, 4, 4, 4, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        cv2.putText(tile, title, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        tiles.append(tile)
    cv2.imwrite(str(path), np.hstack(tiles))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True, type=Path)
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--side", type=int, default=192)
    ap.add_argument("--k", type=int, default=2, help="context planes each side")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    ap.add_argument(
        "--figure",
        type=Path,
        help="also write a before/after PNG of the first picture (regime a, bucket 0.25-0.40)",
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
    methods = ("neighbours", *METHODS_2D)
    scores: dict[tuple[str, str, str], list[float]] = {}
    secs: dict[str, float] = dict.fromkeys(methods, 0.0)
    rng = np.random.default_rng(args.seed)
    for pic in pics:
        picture = load_gray(args.corpus / pic["written"], args.side)
        for regime in REGIMES:
            for bucket in BUCKETS:
                stack, clean = make_stack(picture, regime, args.k, rng)
                hole = bucket_mask(picture.shape, rng, bucket)
                mask = np.zeros(stack.shape, bool)
                if regime.startswith("c"):
                    mask[:] = hole
                else:
                    mask[args.k] = hole
                t = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    out = neigh.inpaint(stack, mask, context_planes=args.k)
                secs["neighbours"] += time.perf_counter() - t
                scores.setdefault((regime, bucket, "neighbours"), []).append(
                    hole_psnr(out[args.k], clean[args.k], hole)
                )
                fills = {"neighbours": out[args.k]}
                for m, inp in inps.items():
                    t = time.perf_counter()
                    out2 = inp.inpaint(stack[args.k], hole)
                    secs[m] += time.perf_counter() - t
                    fills[m] = out2
                    scores.setdefault((regime, bucket, m), []).append(
                        hole_psnr(out2, clean[args.k], hole)
                    )
                if (
                    args.figure
                    and pic is pics[0]
                    and regime == REGIMES[0]
                    and bucket == "0.25-0.40"
                ):
                    write_figure(args.figure, stack, hole, args.k, fills)
        print(f"done {pic['written']}", flush=True)

    lines = [
        f"Hole PSNR (dB) of the middle plane, mean ± standard error over {len(pics)} "
        f"validation photographs ({args.side}×{args.side} px, grayscale), K = {args.k}, "
        f"{2 * args.k + 1} planes, seed {args.seed}.",
        "",
        "| regime | bucket | " + " | ".join(methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for regime in REGIMES:
        for bucket in BUCKETS:
            cells = []
            for m in methods:
                v = np.array(scores[(regime, bucket, m)])
                se = v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else float("nan")
                cells.append(f"{v.mean():.2f} ± {se:.2f}")
            lines.append(f"| {regime} | {bucket} | " + " | ".join(cells) + " |")
    lines += ["", "Time (s, summed): " + ", ".join(f"{m} {secs[m]:.1f}" for m in methods)]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
