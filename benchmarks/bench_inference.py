"""Time and peak memory of Inpainter.inpaint vs image size, mask density and method (CPU).

Each case runs in a fresh subprocess so that its peak RSS is its own: one timed call, then
one more call under tracemalloc for the traced peak (tracemalloc slows the many small
windows of sparse masks down about 3x, so it is kept out of the timing). Images are uint8 RGB
(a smooth synthetic picture); masks are

- dense: thick random strokes over the whole image, about 20 % of the pixels;
- sparse: about 1 % of the pixels in small round spots (radius 3-10 px) scattered uniformly.

Usage::

    python benchmarks/bench_inference.py                  # the recorded configuration
    python benchmarks/bench_inference.py --sizes 512 2048 --methods telea --no-write
    python benchmarks/bench_inference.py --threads 1      # CPU shared with other work
    python benchmarks/bench_inference.py --photo 4096 --threads 1   # issue 16's rows
    python benchmarks/bench_inference.py --photo 4096 --methods default default-previous \
        telea biharmonic                                   # with the settings before issue 16
    python benchmarks/bench_inference.py --photo 4096 --weights FILE --stage2 FILE \
        --weights-label 'a candidate'                      # also other weights, as `weights`
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import time
import tracemalloc

import numpy as np

DEFAULT_SIZES = [512, 2048, 8192]
DEFAULT_METHODS = ["telea", "ns", "biharmonic", "default"]
# Cases of the network beyond these sizes are skipped (said in the table): about a second
# per 512-px window on one CPU core.
RNON_MAX_DENSE = 8192
RNON_MAX_SPARSE = 8192


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


PHOTO_KINDS = ("spots", "strokes")
PHOTO_METHODS = ["default", "telea", "biharmonic"]
#: Method names of the benchmark that are an inpainter with other settings.
METHOD_VARIANTS = {
    # What the engine did before issue 16: stage 2 over its whole receptive radius,
    # 512 px blended windows over thin large holes.
    "default-previous": (
        "default", {"stage2_halo": None, "grid_tile": None, "window_multiple": 16}
    ),
    # Stage 1 only where no 16 px square fits in a hole (opt-in; costs hole PSNR).
    "default-skip-narrow": ("default", {"stage2_min_width": 16}),
    # The default settings with the networks run by eager torch instead of ONNX Runtime.
    "default-torch": ("default", {"backend": "torch"}),
}


#: The ``--baseline`` rows: ``METHOD@base``, a method run with another checkout's engine.
BASE_SUFFIX = "@base"
#: The ``--weights`` row: this engine with other weights (e.g. a candidate release).
CANDIDATE = "weights"


def make_photo_case(size: int, kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Issue 16's cases: a ``size²`` RGB photograph with spots or strokes (seeded).

    The photograph is scikit-image's bundled ``astronaut`` (512² RGB) enlarged with OpenCV
    ``INTER_CUBIC``. ``spots``: 400 round spots of radius 2-8 px at 4096² (scaled with the
    area below); ``strokes``: 60 straight strokes 3-12 px wide between uniform random
    points (their number scaled with the side below, so that the hole fraction stays).
    Both are spread uniformly over the image.
    """
    import cv2
    from skimage import data

    img = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(seed)
    mask = np.zeros((size, size), np.uint8)
    scale = (size / 4096) ** 2
    if kind == "spots":
        for _ in range(max(1, round(400 * scale))):
            c = tuple(int(v) for v in rng.integers(0, size, 2))
            cv2.circle(mask, c, int(rng.integers(2, 9)), 1, -1)
    elif kind == "strokes":
        for _ in range(max(1, round(60 * size / 4096))):
            p0 = tuple(int(v) for v in rng.integers(0, size, 2))
            p1 = tuple(int(v) for v in rng.integers(0, size, 2))
            cv2.line(mask, p0, p1, 1, int(rng.integers(3, 13)))
    else:
        raise ValueError(f"unknown photo case {kind!r}; use one of {PHOTO_KINDS}")
    return img, mask.astype(bool)


def run_one(
    method: str,
    size: int,
    kind: str,
    threads: int = 2,
    weights: str | None = None,
    stage2: str | None = None,
) -> dict:
    """One timed call of ``method`` (``weights``: the repair file, and its ``stage2``)."""
    import warnings

    import torch

    from rnon_engine.inference.inpainter import Inpainter

    torch.set_num_threads(threads)
    img, mask = (make_photo_case if kind in PHOTO_KINDS else make_case)(size, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        name, kwargs = METHOD_VARIANTS.get(method, (method, {}))
        if method == CANDIDATE:  # --weights: a trained repair file (and its stage 2)
            name, kwargs = weights, {"stage2": stage2}
        # threads=1 keeps the whole call on one core (no guide thread either).
        inp = Inpainter.from_pretrained(name, device="cpu", threads=threads, **kwargs)
    windows = []
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t, cpu = time.perf_counter(), time.process_time()
    inp.inpaint(img, mask, progress=lambda d, n: windows.append(n))
    seconds = time.perf_counter() - t
    cpu_seconds = time.process_time() - cpu
    peak = None
    if seconds <= float(os.environ.get("BENCH_TRACE_MAX_SECONDS", "inf")):
        tracemalloc.start()
        inp.inpaint(img, mask)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "method": method,
        "size": size,
        "mask": kind,
        "hole_frac": float(mask.mean()),
        "windows": windows[-1] if windows else 0,
        "threads": torch.get_num_threads(),
        "model": _describe(inp),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "traced_peak_mb": None if peak is None else peak / 2**20,
        "rss_peak_mb": rss1 / 2**20,
        "rss_before_mb": rss0 / 2**20,
        "image_mb": img.nbytes / 2**20,
    }


def _one_command(args: argparse.Namespace, method: str, size: int, kind: str) -> list[str]:
    """The command that times one case in a fresh process (``--one``)."""
    cmd = [sys.executable, __file__, "--one", method, str(size), kind]
    cmd += ["--threads", str(args.threads)]
    if method == CANDIDATE:
        cmd += ["--weights", os.path.abspath(args.weights)]
        if args.stage2:
            cmd += ["--stage2", os.path.abspath(args.stage2)]
    return cmd


def _mb(value: float | None, digits: int = 1) -> str:
    """A traced peak for the log and table ('—' when the traced call was skipped)."""
    return "—" if value is None else f"{value:.{digits}f}"


def _describe(inp) -> str:
    """The network configuration of an Inpainter ('' for classical methods)."""
    if inp.repair is None:
        return ""
    rc = inp.repair.config
    text = f"repair width {rc.width} depth {rc.depth}"
    if inp.optimize is not None:
        oc = inp.optimize.config
        text += f" + optimize width {oc.width}, {oc.blocks} blocks"
    return text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES)
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--one", nargs=3, metavar=("METHOD", "SIZE", "MASK"))
    parser.add_argument("--threads", type=int, default=2, help="torch / OpenMP threads")
    parser.add_argument(
        "--trace-max-seconds",
        type=float,
        default=float("inf"),
        help="skip the traced second call of cases whose timed call took longer (their "
        "traced peak is then not reported; RSS peak still is)",
    )
    parser.add_argument("--rnon-max-dense", type=int, default=RNON_MAX_DENSE)
    parser.add_argument("--rnon-max-sparse", type=int, default=RNON_MAX_SPARSE)
    parser.add_argument(
        "--cache",
        help="JSON-lines file of measured cases: cases found there are not run again, new "
        "ones are appended (lets a long run be resumed or extended)",
    )
    parser.add_argument(
        "--photo",
        type=int,
        metavar="SIZE",
        help="issue 16's cases instead: a SIZE² photograph with spots and with strokes, "
        "the methods side by side (default: " + " ".join(PHOTO_METHODS) + ")",
    )
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="with --photo: also run the --baseline-methods with the engine of another "
        "checkout (DIR/src first on PYTHONPATH, e.g. a `git archive` of an earlier commit), "
        "as `METHOD@base`",
    )
    parser.add_argument(
        "--baseline-methods",
        nargs="+",
        default=["default"],
        metavar="METHOD",
        help="with --baseline: the methods run with its engine (default: default)",
    )
    parser.add_argument(
        "--baseline-label", default="the baseline", help="what --baseline is, for the docs"
    )
    parser.add_argument(
        "--weights",
        metavar="FILE",
        help="also run (with --photo) or let --one's method `weights` run this engine with "
        "this repair-generator file instead of the packaged one, as `weights`",
    )
    parser.add_argument(
        "--stage2", metavar="FILE", help="with --weights: its optimize-generator file"
    )
    parser.add_argument(
        "--weights-label", default="other weights", help="what --weights is, for the docs"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="with --photo: runs per case (the median is kept)"
    )
    args = parser.parse_args()
    if args.stage2 and not args.weights:
        parser.error("--stage2 goes with --weights")
    if args.weights and not os.path.isfile(args.weights):
        parser.error(f"--weights: no file {args.weights}")
    if args.one and args.one[0] == CANDIDATE and not args.weights:
        parser.error(f"--one {CANDIDATE} needs --weights FILE")
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(args.threads),
        BENCH_TRACE_MAX_SECONDS=str(args.trace_max_seconds),
    )
    if args.one:
        m, s, k = args.one
        print(json.dumps(run_one(m, int(s), k, args.threads, args.weights, args.stage2)))
        return
    if args.photo:
        photo(args, env)
        return
    rows, skipped = [], []
    cached = {}
    if args.cache and os.path.exists(args.cache):
        with open(args.cache) as fh:
            for line in fh:
                row = json.loads(line)
                if row.get("threads") == args.threads:
                    cached[(row["method"], row["size"], row["mask"])] = row
    for method in args.methods:
        for size in args.sizes:
            for kind in ("sparse", "dense"):
                limit = args.rnon_max_dense if kind == "dense" else args.rnon_max_sparse
                if method == "default" and size > limit:
                    skipped.append(f"{method} {kind} {size}²")
                    continue
                key = (method, size, kind)
                if key in cached:
                    row = cached[key]
                else:
                    cmd = _one_command(args, method, size, kind)
                    res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
                    row = json.loads(res.stdout.strip().splitlines()[-1])
                    if args.cache:
                        with open(args.cache, "a") as fh:
                            fh.write(json.dumps(row) + "\n")
                rows.append(row)
                print(
                    f"{method:10s} {size:5d} {kind:6s} holes {row['hole_frac']:.3f} "
                    f"windows {row['windows']:4d} {row['seconds']:8.2f} s "
                    f"traced {_mb(row['traced_peak_mb'])} MB rss {row['rss_peak_mb']:8.1f} MB "
                    f"(image {row['image_mb']:.1f} MB)",
                    flush=True,
                )
    if args.no_write:
        return
    ratios = []
    for method in args.methods:
        by = {(r["size"], r["mask"]): r["seconds"] for r in rows if r["method"] == method}
        both = [s for s in sorted({s for s, _ in by}) if (s, "sparse") in by and (s, "dense") in by]
        if both:
            s = both[-1]
            ratios.append(
                f"{method} {by[(s, 'sparse')]:.1f} s vs {by[(s, 'dense')]:.1f} s "
                f"({100 * by[(s, 'sparse')] / by[(s, 'dense')]:.0f} %) at {s}²"
            )
    models = sorted({r.get("model", "") for r in rows if r["method"] == "default"} - {""})
    lines = [
        "Inpainter.inpaint on uint8 RGB images (synthetic smooth picture), CPU, one process per",
        "case. dense: random thick strokes, about 20 % of the pixels; sparse: about 1 % of the",
        "pixels in round spots of radius 3-10 px scattered uniformly. `default` is the packaged",
        f"model ({'; '.join(models) or 'not run'}; stage 2 on a band around the holes);",
        "tile 512. *windows* is the number of",
        "windows computed. The classical methods give each hole (or a few close holes) its own",
        "window with 8 px of context (`classical.CONTEXT`; they are local, and the",
        "fill equals the whole-plane fill, see tests/test_classical.py), sharing a window only",
        "when that is cheaper (`window_cost` in `plan_tiles`), so their cost follows the hole",
        "area. *time* is one call without tracing; *traced peak* is the largest allocation",
        "traced by tracemalloc during a second call (numpy and Python buffers; torch's own",
        "CPU allocations are not traced); *RSS peak* is the process's peak resident size (it",
        "includes Python, torch, the models and the benchmark's own image and mask: compare",
        "with the 512² rows). At 8192² the traced peak is the output copy (192 MB) plus the",
        "mask as bool arrays (2 × 64 MB) plus the windows in flight: it does not grow with the",
        "image beyond the image, its output and its mask.",
        "",
        "The network gives small holes windows of their own size plus 24 px of context",
        "(`NET_CONTEXT`), rounded up to 16 px and computed at that size (the U-Net's deepest",
        "levels shrink to 1×1 instead of padding every window to 256 px), batched by size;",
        "stage 2 runs on each window's holes plus a 16 px band (`STAGE2_HALO`). Large holes",
        "get blended tiles of 512 px, or smaller over long thin holes (sized to their mean",
        "width, batched). The quality of the small windows against the padded ones is in",
        'docs/evaluation.md ("Small-hole windows"). Holes grouped in a few areas cost only',
        "their windows (no window is made where there is no hole). The network's RSS grows more",
        "than the classical methods' while its traced peak is the same: memory glibc keeps",
        "after it was freed (MALLOC_MMAP_THRESHOLD_=65536 gives most of it back, at a cost",
        "in time); windows are batched up to 512² px. *traced peak* '—': the traced call",
        f"was skipped for cases over {args.trace_max_seconds:g} s.",
        "",
        "Sparse vs dense time: " + ("; ".join(ratios) if ratios else "n/a") + ".",
        f"Torch / OpenMP threads: {args.threads}. **The CPU (2 cores) was shared** with a",
        "background training run while this was measured: the times are upper bounds of",
        "what the machine gives alone; compare rows with each other only loosely.",
        "",
        "| method | size | mask | hole px | windows | time (s) | traced peak (MB) "
        "| RSS peak (MB) | image (MB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['size']}² | {r['mask']} | {100 * r['hole_frac']:.1f} % | "
            f"{r['windows']} | {r['seconds']:.2f} | {_mb(r['traced_peak_mb'], 0)} | "
            f"{r['rss_peak_mb']:.0f} | {r['image_mb']:.0f} |"
        )
    if skipped:
        lines += [
            "",
            "Skipped (too slow for the network on this CPU): " + ", ".join(skipped) + ".",
        ]
    sys.path.insert(0, os.path.dirname(__file__))
    import torch

    from _report import write_section

    torch.set_num_threads(args.threads)  # the machine line reports the cases' threads

    cmd = "python benchmarks/bench_inference.py " + " ".join(sys.argv[1:])
    write_section("inference", "\n".join(lines), cmd.strip())


def photo(args: argparse.Namespace, env: dict) -> None:
    """Issue 16's rows: each method on the spots and strokes photograph, one run."""
    methods = args.methods if args.methods != DEFAULT_METHODS else PHOTO_METHODS
    env = dict(env, BENCH_TRACE_MAX_SECONDS="0")  # time only: no traced second call
    load0 = os.getloadavg()
    rows = []
    based = [m + BASE_SUFFIX for m in args.baseline_methods] if args.baseline else []
    if args.baseline:
        methods = [*methods, *based]
        src = os.path.join(os.path.abspath(args.baseline), "src")
        base_env = dict(env, PYTHONPATH=os.pathsep.join([src, env.get("PYTHONPATH", "")]))
    if args.weights:
        methods = [*methods, CANDIDATE]
    for kind in PHOTO_KINDS:
        # Rounds of every method in turn: a slower spell of a shared machine falls on
        # every method alike, not on the runs of one.
        runs: dict[str, list[dict]] = {method: [] for method in methods}
        for _ in range(args.repeat):
            for method in methods:
                one = method.removesuffix(BASE_SUFFIX)
                cmd = _one_command(args, one, args.photo, kind)
                run_env = base_env if method in based else env
                res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=run_env)
                runs[method].append(json.loads(res.stdout.strip().splitlines()[-1]))
        for method in methods:
            # The run of median wall time (its CPU time with it): robust to one slow run.
            row = sorted(runs[method], key=lambda r: r["seconds"])[(args.repeat - 1) // 2]
            row["method"] = method
            rows.append(row)
            print(
                f"{kind:8s} {method:20s} holes {row['hole_frac']:.4f} windows "
                f"{row['windows']:5d} {row['seconds']:8.2f} s wall {row['cpu_seconds']:8.2f} s CPU",
                flush=True,
            )
    load1 = os.getloadavg()
    if args.no_write:
        return
    rounds = (
        f", the median of {args.repeat} rounds (every method once a round)"
        if args.repeat > 1
        else ""
    )
    lines = [
        f"Issue 16's cases: a {args.photo}² RGB photograph (scikit-image's `astronaut` "
        "enlarged with OpenCV `INTER_CUBIC`) with 400 round spots of radius 2-8 px, and with "
        "60 straight strokes 3-12 px wide between random points (seeded, "
        "`make_photo_case`); each method in its own process, one after the other, in this "
        f"run{rounds}. Torch / OpenMP threads: {args.threads}. *CPU* is the process's CPU time "
        "(`time.process_time`, all its threads), the figure to compare on a shared machine; "
        "*wall* is the elapsed time, the figure a user waits (OpenCV's inpainting uses one "
        f"thread whatever the setting). Load average (1/5/15 min) before: {load0[0]:.1f} / "
        f"{load0[1]:.1f} / {load0[2]:.1f}, after: {load1[0]:.1f} / {load1[1]:.1f} / "
        f"{load1[2]:.1f} on {os.cpu_count()} cores."
        + (
            f" {' and '.join(f'`{m}`' for m in based)}: "
            f"{' and '.join(f'`{m}`' for m in args.baseline_methods)} with the engine of "
            f"{args.baseline_label} (`--baseline`)."
            if args.baseline
            else ""
        )
        + (
            f" `{CANDIDATE}`: this engine with {args.weights_label} (`--weights`)."
            if args.weights
            else ""
        ),
        "",
        "| mask | method | hole px | windows | wall (s) | CPU (s) | wall vs telea "
        "| CPU vs telea |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind in PHOTO_KINDS:
        ref = next((r for r in rows if r["mask"] == kind and r["method"] == "telea"), None)
        for r in (r for r in rows if r["mask"] == kind):
            wall = "—" if ref is None else f"{r['seconds'] / ref['seconds']:.1f}×"
            cpu = "—" if ref is None else f"{r['cpu_seconds'] / ref['cpu_seconds']:.1f}×"
            lines.append(
                f"| {kind} | {r['method']} | {100 * r['hole_frac']:.2f} % | {r['windows']} | "
                f"{r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {wall} | {cpu} |"
            )
    sys.path.insert(0, os.path.dirname(__file__))
    import torch

    from _report import write_section

    torch.set_num_threads(args.threads)
    # Paths of this machine: the docs name them by placeholders (and the labels) instead.
    hidden = {
        args.baseline: "<baseline checkout>",
        args.weights: "<weights>",
        args.stage2: "<stage2>",
    }
    argv = [hidden.get(a, a) if a else a for a in sys.argv[1:]]
    cmd = "python benchmarks/bench_inference.py " + shlex.join(argv)
    write_section(f"inference-issue16-threads{args.threads}", "\n".join(lines), cmd.strip())


if __name__ == "__main__":
    main()
