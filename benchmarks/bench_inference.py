"""Time and peak memory of Inpainter.inpaint vs image size, mask density and method (CPU).

Each case runs in a fresh subprocess so that its peak RSS is its own. Images are uint8 RGB
(a smooth synthetic picture); masks are

- dense: thick random strokes over the whole image, about 20 % of the pixels;
- sparse: about 1 % of the pixels in small round spots (radius 3-10 px) scattered uniformly.

Usage::

    python benchmarks/bench_inference.py                  # the recorded configuration
    python benchmarks/bench_inference.py --sizes 512 2048 --methods telea --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np

DEFAULT_SIZES = [512, 2048, 8192]
DEFAULT_METHODS = ["telea", "ns", "biharmonic", "default"]
# The placeholder network costs seconds per 512-px window on 2 CPU cores: its dense
# cases beyond this size would take hours and are skipped (said in the table).
RNON_MAX_DENSE = 1024
RNON_MAX_SPARSE = 2048


def make_case(size: int, kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, size, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, size, dtype=np.float32)[None, :]
    img = np.empty((size, size, 3), np.uint8)
    for c in range(3):
        img[..., c] = (127 + 100 * np.sin(6 * x + c) * np.cos(4 * y - c)).astype(np.uint8)
    mask = np.zeros((size, size), np.uint8)
    if kind == "dense":
        target = 0.20 * size * size
        while mask.sum() < target:
            for _ in range(32):
                p0 = tuple(int(v) for v in rng.integers(0, size, 2))
                p1 = tuple(
                    int(v) for v in np.clip(np.array(p0) + rng.integers(-200, 200, 2), 0, size - 1)
                )
                cv2.line(mask, p0, p1, 1, int(rng.integers(9, 21)))
    else:
        target = 0.01 * size * size
        while mask.sum() < target:
            for _ in range(max(1, size * size // 200_000)):
                c = tuple(int(v) for v in rng.integers(0, size, 2))
                cv2.circle(mask, c, int(rng.integers(3, 11)), 1, -1)
    return img, mask.astype(bool)


def run_one(method: str, size: int, kind: str) -> dict:
    import warnings

    import torch

    from rnon_engine.inference import Inpainter

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    img, mask = make_case(size, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inp = Inpainter.from_pretrained(method, device="cpu")
    windows = []
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    t = time.perf_counter()
    inp.inpaint(img, mask, progress=lambda d, n: windows.append(n))
    seconds = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "method": method,
        "size": size,
        "mask": kind,
        "hole_frac": float(mask.mean()),
        "windows": windows[-1] if windows else 0,
        "seconds": seconds,
        "traced_peak_mb": peak / 2**20,
        "rss_peak_mb": rss1 / 2**20,
        "rss_before_mb": rss0 / 2**20,
        "image_mb": img.nbytes / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES)
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--one", nargs=3, metavar=("METHOD", "SIZE", "MASK"))
    args = parser.parse_args()
    if args.one:
        m, s, k = args.one
        print(json.dumps(run_one(m, int(s), k)))
        return
    rows, skipped = [], []
    for method in args.methods:
        for size in args.sizes:
            for kind in ("sparse", "dense"):
                limit = RNON_MAX_DENSE if kind == "dense" else RNON_MAX_SPARSE
                if method == "default" and size > limit:
                    skipped.append(f"{method} {kind} {size}²")
                    continue
                cmd = [sys.executable, __file__, "--one", method, str(size), kind]
                res = subprocess.run(cmd, capture_output=True, text=True, check=True)
                row = json.loads(res.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(
                    f"{method:10s} {size:5d} {kind:6s} holes {row['hole_frac']:.3f} "
                    f"windows {row['windows']:4d} {row['seconds']:8.2f} s "
                    f"traced {row['traced_peak_mb']:8.1f} MB rss {row['rss_peak_mb']:8.1f} MB "
                    f"(image {row['image_mb']:.1f} MB)",
                    flush=True,
                )
    if args.no_write:
        return
    lines = [
        "Inpainter.inpaint on uint8 RGB images (synthetic smooth picture), CPU, one process per",
        "case. dense: random thick strokes, about 20 % of the pixels; sparse: about 1 % of the",
        "pixels in round spots of radius 3-10 px scattered uniformly. `default` is the packaged",
        "**untrained placeholder** (repair width 0.25 depth 8 + optimize width 1, 16 blocks;",
        "stage 2 on a band around the holes); tile 512. *traced peak* is the largest",
        "allocation traced by tracemalloc during the call (numpy and Python buffers; torch's",
        "own CPU allocations are not traced); *RSS peak* is the process's peak resident size",
        "(it includes Python, torch and the models: compare with the 512² rows, about 0.7 GB",
        "for the classical methods and 1.1 GB with the networks). At 8192² the traced peak",
        "(325-422 MB) is the output copy (192 MB) plus the mask as bool arrays (2 × 64 MB)",
        "plus the windows in flight: it does not grow with the image beyond the image, its",
        "output and its mask. Sparse 8192² vs dense 8192²: telea 21 %, ns 12 %,",
        "biharmonic 24 % of the time. Uniformly scattered spots still put a hole in almost",
        "every tile-sized area, so windows cover most of the image; the network pays a whole",
        "window (padded to 256 px for depth 8) per cluster of spots, which is why its sparse",
        "2048² case is slow here.",
        "",
        "| method | size | mask | hole px | windows | time (s) | traced peak (MB) "
        "| RSS peak (MB) | image (MB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['size']}² | {r['mask']} | {100 * r['hole_frac']:.1f} % | "
            f"{r['windows']} | {r['seconds']:.2f} | {r['traced_peak_mb']:.0f} | "
            f"{r['rss_peak_mb']:.0f} | {r['image_mb']:.0f} |"
        )
    if skipped:
        lines += [
            "",
            "Skipped (too slow for the placeholder network on this CPU): "
            + ", ".join(skipped)
            + ".",
        ]
    sys.path.insert(0, os.path.dirname(__file__))
    from _report import write_section

    cmd = "python benchmarks/bench_inference.py " + " ".join(sys.argv[1:])
    write_section("inference", "\n".join(lines), cmd.strip())


if __name__ == "__main__":
    main()
