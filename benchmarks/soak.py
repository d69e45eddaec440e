"""Resident memory over long use: many identical repairs in one process.

One process loads the default model and repairs the same image ``--repeats`` times,
recording its resident set size (RSS) after every call. After ``--warmup`` calls the
series should stay flat: the issue's target is a spread ``(max - min) / min`` within 5 %.
``--compare`` runs the series twice, in fresh processes, with and without
:func:`rnon_engine.inference.memory.release_memory` (glibc ``malloc_trim`` after each
call; "without" patches it to a no-op), and writes both rows to docs/benchmarks.md.

Usage::

    python benchmarks/soak.py --compare                     # the recorded configuration
    python benchmarks/soak.py --repeats 20 --release off --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402
from bench_inference import make_case  # noqa: E402


def varied_mask(size: int, seed: int) -> np.ndarray:
    """Call ``seed``'s mask: about 1 % in small spots plus two to four thick strokes.

    Every call gets another mask, so the windows (their number, sizes and batches) and
    thus the sizes of the blocks allocated differ from call to call, as in real use.
    """
    import cv2

    rng = np.random.default_rng(seed)
    mask = np.zeros((size, size), np.uint8)
    while mask.mean() < 0.01:
        c = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.circle(mask, c, int(rng.integers(3, 11)), 1, -1)
    for _ in range(int(rng.integers(2, 5))):
        p0 = rng.integers(0, size, 2)
        p1 = np.clip(p0 + rng.integers(-150, 150, 2), 0, size - 1)
        cv2.line(
            mask, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 1, int(rng.integers(9, 21))
        )
    return mask.astype(bool)


def run_series(method: str, size: int, kind: str, repeats: int, release: bool) -> dict[str, object]:
    """Repair ``repeats`` times in this process; the RSS after each call.

    ``kind`` ``"varied"`` gives every call its own mask (:func:`varied_mask`, seeded by the
    call's number, the same in every run); ``"sparse"`` / ``"dense"`` repeat one mask.
    """
    import warnings

    import psutil
    import torch

    import rnon_engine.inference.inpainter as inpainter
    from rnon_engine.inference.inpainter import Inpainter

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    trims: list[float] = []
    if release:
        trim = inpainter.release_memory

        def timed() -> bool:
            t0 = time.perf_counter()
            done = trim()
            trims.append(time.perf_counter() - t0)
            return done

        inpainter.release_memory = timed
    else:
        inpainter.release_memory = lambda: False
    img, mask = make_case(size, "sparse" if kind == "varied" else kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inp = Inpainter.from_pretrained(method, device="cpu")
    proc = psutil.Process()
    rss, seconds, fracs = [], [], []
    for i in range(repeats):
        if kind == "varied":
            mask = varied_mask(size, i)
        fracs.append(float(mask.mean()))
        t = time.perf_counter()
        out = inp.inpaint(img, mask)
        seconds.append(time.perf_counter() - t)
        if not np.array_equal(out[~mask], img[~mask]):
            raise SystemExit("pixels outside the mask changed")
        del out
        rss.append(proc.memory_info().rss / 2**20)
    return {
        "method": method,
        "size": size,
        "mask": kind,
        "hole_frac": float(np.mean(fracs)),
        "release": release,
        "threads": torch.get_num_threads(),
        "rss_mb": rss,
        "seconds": seconds,
        "trim_seconds": trims,
    }


def summary(row: dict, warmup: int) -> dict[str, float]:
    """Min, max and spread (``(max - min) / min``) of the RSS after the warm-up calls."""
    tail = row["rss_mb"][warmup:]
    lo, hi = min(tail), max(tail)
    return {
        "min": lo,
        "max": hi,
        "spread": (hi - lo) / lo,
        "median_s": float(np.median(row["seconds"])),
        "trim_ms": 1000 * float(np.median(row["trim_seconds"])) if row["trim_seconds"] else 0.0,
    }


def _series_text(values: list[float], every: int) -> str:
    return " ".join(f"{v:.0f}" for v in values[::every])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="default")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--mask", choices=("varied", "sparse", "dense"), default="varied")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5, help="calls left out of the spread")
    parser.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads")
    parser.add_argument("--release", choices=("on", "off"), default="on")
    parser.add_argument("--compare", action="store_true", help="run with release off and on")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warmup >= args.repeats:
        parser.error("--warmup must be smaller than --repeats")
    if args.one:
        row = run_series(args.method, args.size, args.mask, args.repeats, args.release == "on")
        print(json.dumps(row))
        return
    env = dict(os.environ, BENCH_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    rows = []
    load_start = os.getloadavg()[0]
    for release in ("off", "on") if args.compare else (args.release,):
        cmd = [
            sys.executable, __file__, "--one", "--method", args.method, "--size",
            str(args.size), "--mask", args.mask, "--repeats", str(args.repeats),
            "--warmup", str(args.warmup), "--release", release,
        ]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        row = json.loads(res.stdout.strip().splitlines()[-1])
        s = summary(row, args.warmup)
        print(
            f"release {release}: RSS after warm-up {s['min']:.0f}-{s['max']:.0f} MB "
            f"(spread {100 * s['spread']:.1f} %), median {s['median_s']:.2f} s per repair, "
            f"malloc_trim {s['trim_ms']:.1f} ms",
            flush=True,
        )
        print("  series (MB):", _series_text(row["rss_mb"], 1), flush=True)
        rows.append((row, s))
    if args.no_write:
        return
    every = max(1, args.repeats // 20)
    load = (
        f"Load average (1 min) {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the "
        f"end, on {os.cpu_count()} cores: times are only comparable within a row."
    )
    lines = [
        f"`{args.method}` repairs of a {args.size}² uint8 RGB image (the smooth picture of "
        f"bench_inference.py), mask `{args.mask}` (mean {100 * rows[0][0]['hole_frac']:.1f} % "
        "holes; *varied*: every call its own mask, about 1 % in spots plus two to four thick "
        f"strokes, seeded by the call's number), {args.repeats} calls in one process, torch "
        f"threads {args.threads}. RSS is read after every call; the spread is (max - min) / min "
        f"after the first {args.warmup} calls (target: within 5 %). *release*: "
        "`rnon_engine.inference.memory.release_memory` (glibc `malloc_trim(0)` after each "
        "call; *off* patches it out). Without it the RSS creeps up by hundreds of MB: glibc "
        "keeps the blocks a call freed (the allocator finding in the inference section above); "
        "with it, each call gives them back. Every call keeps the pixels outside its mask. " + load,
        "",
        "| release | calls | median time per call (s) | median malloc_trim (ms) | "
        "RSS after warm-up (MB) | spread | "
        f"RSS after calls 1, {1 + every}, {1 + 2 * every}, ... (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row, s in rows:
        trim = f"{s['trim_ms']:.1f}" if row["release"] else "–"
        lines.append(
            f"| {'on' if row['release'] else 'off'} | {args.repeats} | {s['median_s']:.2f} | "
            f"{trim} | {s['min']:.0f}–{s['max']:.0f} | {100 * s['spread']:.1f} % | "
            f"{_series_text(row['rss_mb'], every)} |"
        )
    command = "python benchmarks/soak.py " + " ".join(sys.argv[1:])
    write_section("Soak: resident memory over repeated calls", "\n".join(lines), command.strip())


if __name__ == "__main__":
    main()
