"""Eager torch, ONNX Runtime and ``torch.compile`` on the CPU at inference's window shapes.

CPU time (``time.thread_time``: robust to other jobs on a shared machine), one thread,
median of ``--repeats`` calls after a warm-up, for the default model's two networks on the
batches the inpainter really forms (issue 16's 4096² photograph: packed spot windows,
blended 128² stroke windows, stage-2 boxes). Prints a Markdown table and the largest
difference of each backend's output from eager torch.

    python benchmarks/bench_backends.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

#: (label, stage, batch, side): shapes read off a profile of the photograph cases.
SHAPES = [
    ("stage 1, 16×48² (spots)", 1, 16, 48),
    ("stage 1, 16×128² (strokes)", 1, 16, 128),
    ("stage 2, 1×64² (spot box)", 2, 1, 64),
    ("stage 2, 16×128² (stroke windows)", 2, 16, 128),
]


def _cpu(fn, repeats: int) -> float:
    fn()  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        t = time.thread_time()
        fn()
        times.append(time.thread_time() - t)
    return statistics.median(times)


def _calls(stage, repair, optimize, onnx, comp1, comp2, img, holes):
    """The eager, ONNX Runtime and compiled calls of one stage on one batch."""
    import torch

    x = torch.from_numpy(img)
    valid = torch.from_numpy(~holes)[:, None].float()
    if stage == 1:
        return (
            lambda: valid * x + (1 - valid) * repair(x, valid, pad_to=8),
            lambda: onnx.repair(img, holes, pad_to=8),
            lambda: valid * x + (1 - valid) * comp1(x, valid, pad_to=8),
        )
    return (lambda: optimize(x), lambda: onnx.optimize(img), lambda: comp2(x))


def main() -> None:
    import torch

    from rnon_engine.export.onnx_export import export_onnx, load_generators
    from rnon_engine.inference.onnx_model import OnnxNetworks

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="also torch.compile (slow to build)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    repair, optimize, _ = load_generators("default")
    repair.eval()
    optimize.eval()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = export_onnx("default", tmp)
        onnx = OnnxNetworks(paths["repair"], paths["optimize"], threads=1)
        comp1 = torch.compile(repair, dynamic=False) if args.compile else None
        comp2 = torch.compile(optimize, dynamic=False) if args.compile else None
        print(
            "| shape | eager torch (s) | ONNX Runtime (s) | ratio | max abs diff |"
            + (" torch.compile (s) | ratio | max abs diff |" if args.compile else "")
        )
        print("|---|---|---|---|---|" + ("---|---|---|" if args.compile else ""))
        for label, stage, n, side in SHAPES:
            img = rng.random((n, 3, side, side), dtype=np.float32)
            holes = np.zeros((n, side, side), bool)
            holes[:, side // 3 : side // 3 + max(4, side // 8), :] = True
            eager, ort, comp = _calls(stage, repair, optimize, onnx, comp1, comp2, img, holes)
            with torch.inference_mode():
                ref = eager().numpy()
                t_e = _cpu(eager, args.repeats)
                t_o = _cpu(ort, args.repeats)
                d_o = float(np.abs(ort() - ref).max())
                row = f"| {label} | {t_e:.3f} | {t_o:.3f} | {t_o / t_e:.2f} | {d_o:.1e} |"
                if args.compile:
                    t_c = _cpu(comp, args.repeats)
                    d_c = float(np.abs(comp().numpy() - ref).max())
                    row += f" {t_c:.3f} | {t_c / t_e:.2f} | {d_c:.1e} |"
                print(row, flush=True)


if __name__ == "__main__":
    main()
