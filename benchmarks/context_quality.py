"""Quality of the network's small-hole windows vs the padded windows, on real pictures.

For each picture (resized so that its longer side is ``--side`` px) and each kind of
sparse damage (dust of radius 1-4 px, spots of radius 3-10 px, spots of radius 10-25 px,
thin scratches; each about 1 % of the pixels except the large spots, 3 %), the default
model repairs it with

- ``padded``: the windows of earlier releases: 64 px of context around each group of
  holes, rounded up to the U-Net's padding multiple (256 px) (``window_multiple=256,
  margin=64``);
- ``context N``: small-hole windows with N px of context, rounded up to 16 px and computed
  at that size (``margin=N``; N = 24 is the engine's default, ``NET_CONTEXT``);

and, for reference, the classical methods. Reported per damage kind: PSNR over the hole
pixels (mean over pictures), the mean paired difference to ``padded`` with its standard
error, SSIM over the picture, and the summed time. Both stages run (stage 2 on the band).

    python benchmarks/context_quality.py --data <val-photos> \
        --data <corpus>/val --limit 32 --out docs/context_quality.md
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import cv2
import numpy as np

KINDS = {
    "dust r1-4": (1, 4, 0.01),
    "spots r3-10": (3, 10, 0.01),
    "spots r10-25": (10, 25, 0.03),
    "scratches": None,
}
EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp")


def load(path: Path, side: int) -> np.ndarray | None:
    im = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if im is None or min(im.shape[:2]) < 64:
        return None
    s = side / max(im.shape[:2])
    if s < 1:
        im = cv2.resize(im, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(im[..., ::-1])


def damage(shape: tuple[int, int], kind: str, rng: np.random.Generator) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    spec = KINDS[kind]
    if spec is None:
        while m.mean() < 0.01:
            p0 = rng.integers(0, shape[::-1])
            p1 = p0 + rng.integers(-60, 61, 2)
            cv2.line(m, tuple(map(int, p0)), tuple(map(int, p1)), 1, int(rng.integers(1, 5)))
    else:
        rmin, rmax, frac = spec
        while m.mean() < frac:
            c = (int(rng.integers(0, shape[1])), int(rng.integers(0, shape[0])))
            cv2.circle(m, c, int(rng.integers(rmin, rmax + 1)), 1, -1)
    return m.astype(bool)


def hole_psnr(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> float:
    d = (a[m].astype(np.float64) - b[m].astype(np.float64)) ** 2
    return float(10 * np.log10(255.0**2 / max(d.mean(), 1e-12)))


def main() -> None:
    import torch

    from rnon_engine.inference.inpainter import Inpainter
    from rnon_engine.metrics import ssim

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", action="append", required=True, help="folder(s) of pictures")
    ap.add_argument("--limit", type=int, default=32, help="pictures in all (folders in order)")
    ap.add_argument("--side", type=int, default=640)
    ap.add_argument("--contexts", type=int, nargs="+", default=[16, 24, 32])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--weights", default="default", help="the model: 'default' or a repair-generator file"
    )
    ap.add_argument("--stage2", help="optimize-generator file to pair with --weights")
    ap.add_argument("--out", help="Markdown file to write the table to")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    paths: list[Path] = []
    for folder in args.data:
        found = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in EXTS)
        random.Random(0).shuffle(found)
        names = {p.name for p in paths}
        paths += [p for p in found if p.name not in names]
    variants = {
        "padded": Inpainter.from_pretrained(
            args.weights, "cpu", stage2=args.stage2, window_multiple=256, margin=64
        )
    }
    for c in args.contexts:
        variants[f"context {c}"] = Inpainter.from_pretrained(
            args.weights, "cpu", stage2=args.stage2, margin=c
        )
    for m in ("telea", "biharmonic"):
        variants[m] = Inpainter.from_pretrained(m)
    res: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    used = 0
    for path in paths:
        if used == args.limit:
            break
        img = load(path, args.side)
        if img is None:
            continue
        used += 1
        for k, kind in enumerate(KINDS):
            rng = np.random.default_rng([used, k])
            hole = damage(img.shape[:2], kind, rng)
            for name, inp in variants.items():
                t = time.perf_counter()
                out = inp.inpaint(img, hole)
                sec = time.perf_counter() - t
                res.setdefault((kind, name), []).append(
                    (hole_psnr(img, out, hole), ssim(img / 255.0, out / 255.0), sec)
                )
        print(f"{used}/{args.limit} {path.name}", flush=True)
    lines = [
        f"{used} pictures (longer side {args.side} px), model {args.weights}, both stages, CPU "
        f"{args.threads} thread(s).",
        "",
        "| damage | windows | hole PSNR (dB) | vs padded (dB) | SSIM | time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for kind in KINDS:
        ref = np.array(res[(kind, "padded")])
        for name in variants:
            a = np.array(res[(kind, name)])
            d = a[:, 0] - ref[:, 0]
            se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0.0
            vs = "—" if name == "padded" else f"{d.mean():+.3f} ± {se:.3f}"
            lines.append(
                f"| {kind} | {name} | {a[:, 0].mean():.3f} | {vs} | {a[:, 1].mean():.4f} | "
                f"{a[:, 2].sum():.1f} |"
            )
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
