"""Does a change of the engine leave the packaged model's pixels as they were?

Runs the default model on issue 16's photograph cases (``bench_inference.make_photo_case``)
with each backend and thread count, and ``"auto"`` (the network and the classical fills,
each hole by its kind) with two threads, and saves the outputs; run it in two checkouts,
then compare the two files::

    python benchmarks/same_pixels.py --out new.npz
    (cd <other checkout> && python benchmarks/same_pixels.py --out old.npz)
    python benchmarks/same_pixels.py --compare old.npz new.npz

Each case runs in a fresh process (thread counts are process-wide settings).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

CASES = [
    (backend, threads, kind)
    for backend in ("torch", "onnxruntime")
    for threads in (1, 2)
    for kind in ("spots", "strokes")
] + [("auto", 2, kind) for kind in ("spots", "strokes")]


def run_case(backend: str, threads: int, kind: str, size: int, out: Path) -> None:
    import torch

    from bench_inference import make_photo_case
    from rnon_engine.inference.inpainter import Inpainter

    torch.set_num_threads(threads)
    image, mask = make_photo_case(size, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if backend == "auto":  # its network member on the default backend
            inp = Inpainter.from_pretrained("auto", "cpu", threads=threads)
        else:
            inp = Inpainter.from_pretrained("default", "cpu", threads=threads, backend=backend)
        np.save(out, inp.inpaint(image, mask))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="write the outputs here (.npz)")
    ap.add_argument("--size", type=int, default=1024, help="side of the photograph")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two such files")
    ap.add_argument("--case", nargs=4, help=argparse.SUPPRESS)  # one case, in its process
    args = ap.parse_args()
    if args.case:
        backend, threads, kind, out = args.case
        run_case(backend, int(threads), kind, args.size, Path(out))
        return
    if args.compare:
        a, b = (np.load(p) for p in args.compare)
        same = True
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                print(f"{key}: only in one file")
                same = False
                continue
            diff = np.abs(a[key].astype(np.int64) - b[key].astype(np.int64))
            n = np.count_nonzero(diff)
            print(f"{key}: " + (f"{n} px differ, max {diff.max()}" if n else "identical"))
            same &= not diff.any()
        print("the same pixels" if same else "the pixels differ")
        sys.exit(0 if same else 1)
    if not args.out:
        ap.error("give --out FILE or --compare A B")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend, threads, kind in CASES:
            path = Path(tmp) / f"{backend}-{threads}-{kind}.npy"
            cmd = [
                sys.executable,
                __file__,
                "--size",
                str(args.size),
                "--case",
                backend,
                str(threads),
                kind,
                str(path),
            ]
            subprocess.run(cmd, check=True)
            results[f"{backend}_threads{threads}_{kind}"] = np.load(path)
            print(f"{backend} threads {threads} {kind}: done", flush=True)
    np.savez_compressed(args.out, **results)


if __name__ == "__main__":
    main()
