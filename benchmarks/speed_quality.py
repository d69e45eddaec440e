"""What the inference speed settings cost in quality, on real pictures with sparse damage.

Repairs the same pictures and damage as ``benchmarks/context_quality.py`` (plus issue 16's
long straight strokes) with named settings of the default model (:data:`VARIANTS`; by
default ``previous`` = before issue 16, ``default``, ``default, torch`` = the defaults on
eager torch, ``repair only``) and reports per damage kind the hole PSNR (mean over
pictures), the mean paired difference to the ``--reference`` variant with its standard
error, SSIM over the picture and the summed CPU time of the calls (``time.process_time``:
robust to other jobs on a shared machine).

    python benchmarks/speed_quality.py --data <corpus>/val --limit 12
    python benchmarks/speed_quality.py --data <val-photos> --limit 10 --reference speed2 \
        --variants speed2 default "pixel fit" "thin overlap 8"
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from context_quality import EXTS, KINDS, damage, hole_psnr, load  # noqa: E402


def strokes(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Issue 16's strokes at this size: straight, 3-12 px wide, about 6 % of the pixels."""
    m = np.zeros(shape, np.uint8)
    while m.mean() < 0.06:
        p0 = rng.integers(0, shape[::-1])
        p1 = rng.integers(0, shape[::-1])
        cv2.line(m, tuple(map(int, p0)), tuple(map(int, p1)), 1, int(rng.integers(3, 13)))
    return m.astype(bool)


#: Named settings of ``Inpainter.from_pretrained("default", "cpu", **kwargs)`` and the
#: stages they run.
VARIANTS: dict[str, tuple[dict, str]] = {
    # What the engine did before issue 16: stage 2 on every window, 512 px blended windows.
    "previous": ({"stage2_min_width": 0, "grid_tile": None, "window_multiple": 16}, "both"),
    "default": ({}, "both"),
    # The defaults with the networks run by eager torch rather than ONNX Runtime.
    "default, torch": ({"backend": "torch"}, "both"),
    "repair only": ({}, "repair"),
    # The defaults before branch speed3: small-hole windows rounded to 16 px, thin-hole
    # windows overlapping 32 px (overlap=256 gives them that; checked bit-identical to
    # that code's defaults on these damages, which have no thick holes).
    "speed2": ({"window_multiple": 16, "overlap": 256}, "both"),
    # Measured, not default: windows fitted to the hole pixels (fewer pixels, but
    # -0.07 dB on scratches), thin-hole windows overlapping 8 px instead of 16.
    "pixel fit": ({"pixel_fit": True}, "both"),
    "thin overlap 8": ({"overlap": 64}, "both"),
}
DEFAULT_VARIANTS = ("previous", "default", "default, torch", "repair only")


def main() -> None:
    import torch

    from rnon_engine.inference.inpainter import Inpainter
    from rnon_engine.metrics import ssim

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", action="append", required=True, help="folder(s) of pictures")
    ap.add_argument("--limit", type=int, default=12, help="pictures in all (folders in order)")
    ap.add_argument("--side", type=int, default=640)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="Markdown file to write the table to")
    ap.add_argument(
        "--variants",
        nargs="+",
        help=f"settings to compare (default: {', '.join(DEFAULT_VARIANTS)}; "
        f"all: {', '.join(VARIANTS)})",
    )
    ap.add_argument(
        "--reference", default="previous", help="the variant the others are paired with"
    )
    ap.add_argument("--kinds", nargs="+", help="damage kinds (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    paths: list[Path] = []
    for folder in args.data:
        found = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in EXTS)
        random.Random(0).shuffle(found)
        names = {p.name for p in paths}
        paths += [p for p in found if p.name not in names]
    chosen = args.variants or list(DEFAULT_VARIANTS)
    unknown = [v for v in [args.reference, *chosen] if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    if args.reference not in chosen:
        chosen.insert(0, args.reference)
    variants = {
        name: (Inpainter.from_pretrained("default", "cpu", **VARIANTS[name][0]), VARIANTS[name][1])
        for name in chosen
    }
    kinds = args.kinds or [*KINDS, "strokes 3-12"]
    res: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    used = 0
    for path in paths:
        if used == args.limit:
            break
        img = load(path, args.side)
        if img is None:
            continue
        used += 1
        for k, kind in enumerate(kinds):
            rng = np.random.default_rng([used, k])
            hole = strokes(img.shape[:2], rng) if kind == "strokes 3-12" else None
            if hole is None:
                hole = damage(img.shape[:2], kind, rng)
            for name, (inp, stages) in variants.items():
                t = time.process_time()
                out = inp.inpaint(img, hole, stages=stages)
                sec = time.process_time() - t
                res.setdefault((kind, name), []).append(
                    (hole_psnr(img, out, hole), ssim(img / 255.0, out / 255.0), sec)
                )
        print(f"{used}/{args.limit} {path.name}", flush=True)
    lines = [
        f"{used} pictures (longer side {args.side} px), default model, CPU {args.threads} "
        "thread(s); time = summed CPU time of the calls.",
        "",
        f"| damage | settings | hole PSNR (dB) | vs {args.reference} (dB) | SSIM | "
        f"vs {args.reference} | CPU time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in kinds:
        ref = np.array(res[(kind, args.reference)])
        for name in variants:
            a = np.array(res[(kind, name)])
            d = a[:, 0] - ref[:, 0]
            se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0.0
            vs = "—" if name == args.reference else f"{d.mean():+.3f} ± {se:.3f}"
            vs_ssim = "—" if name == args.reference else f"{(a[:, 1] - ref[:, 1]).mean():+.5f}"
            lines.append(
                f"| {kind} | {name} | {a[:, 0].mean():.3f} | {vs} | {a[:, 1].mean():.4f} | "
                f"{vs_ssim} | {a[:, 2].sum():.1f} |"
            )
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
