"""Cost per pixel of guided stage-2 networks of several sizes, as inference runs them.

Each candidate (``OptimizeConfig(guide="biharmonic", head_kernel=3)`` with the given width
and number of dilated blocks, randomly initialised: the cost does not depend on the
weights) is exported to ONNX the way the inpainter's cache does
(:func:`rnon_engine.export.onnx_export.export_graphs`) and run by ONNX Runtime on the CPU
at the window shapes of issue 16's cases (16 × 128², the strokes' windows; 64 × 64², the
spots'), best of ``--rounds`` calls, candidates interleaved so that load hits them alike.
Also printed: parameters and receptive radius (the band stage 2 needs around a hole).

    python benchmarks/bench_stage2_sizes.py --threads 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

#: (label, width, blocks): the fourth release's stage 2 first, the fifth release's second.
CANDIDATES = (
    ("0.5 × 4 blocks (fourth release)", 0.5, 4),
    ("0.5 × 1 block (fifth release)", 0.5, 1),
    ("0.5 × 2 blocks", 0.5, 2),
    ("0.25 × 4 blocks", 0.25, 4),
    ("0.25 × 2 blocks", 0.25, 2),
    ("0.25 × 1 block", 0.25, 1),
)
SHAPES = ((16, 128), (64, 64))


def main() -> None:
    import onnxruntime as ort
    import torch

    from rnon_engine import create_model
    from rnon_engine.export.onnx_export import export_graphs

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    repair = create_model("rnon-repair", width=0.125, depth=4).eval()
    rng = np.random.default_rng(0)
    feeds = {}
    for n, side in SHAPES:
        image = rng.random((n, 3, side, side), dtype=np.float32)
        valid = (rng.random((n, 1, side, side)) > 0.1).astype(np.float32)
        feeds[n, side] = {"image": image, "guide": image[:, ::-1].copy(), "valid": valid}
    sessions, rows = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, width, blocks in CANDIDATES:
            net = create_model(
                "rnon-optimize", width=width, blocks=blocks, guide="biharmonic", head_kernel=3
            ).eval()
            paths = export_graphs(repair, net, Path(tmp) / f"w{width}-b{blocks}")
            sessions[label] = ort.InferenceSession(
                str(paths["optimize"]), opts, providers=["CPUExecutionProvider"]
            )
            rows[label] = {
                "params": sum(p.numel() for p in net.parameters()),
                "halo": net.config.halo,
                "best": {shape: float("inf") for shape in SHAPES},
            }
            for shape in SHAPES:
                sessions[label].run(None, feeds[shape])  # warm-up
        for _ in range(args.rounds):
            for label, sess in sessions.items():
                for shape in SHAPES:
                    t = time.perf_counter()
                    sess.run(None, feeds[shape])
                    best = rows[label]["best"]
                    best[shape] = min(best[shape], time.perf_counter() - t)
    heads = " | ".join(f"ns / px at {n} × {side}²" for n, side in SHAPES)
    print(f"| stage 2 (width × blocks) | parameters | receptive radius (px) | {heads} |")
    print("|---|---|---|" + "---|" * len(SHAPES))
    for label, row in rows.items():
        cells = " | ".join(
            f"{1e9 * row['best'][n, side] / (n * side * side):.0f}" for n, side in SHAPES
        )
        print(f"| {label} | {row['params']:,} | {row['halo']} | {cells} |")


if __name__ == "__main__":
    main()
