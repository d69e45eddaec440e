"""Does a short CPU fine-tune help on images unlike photographs? (docs/finetune.md)

Trains on synthetic 16-bit fluorescence planes (:func:`rnon_engine.samples.fluorescence_planes`,
seed 1), evaluates on held-out planes (seed 2, never seen in training) with the paper's
four hole-ratio buckets (:func:`rnon_engine.train.masks.make_eval_masks`, seed 0), before and
after fine-tuning, beside OpenCV Telea / Navier-Stokes and scikit-image biharmonic::

    python benchmarks/bench_finetune.py --init BASE.safetensors --minutes 5 --out DIR

Every method runs through :class:`rnon_engine.inference.Inpainter` on the ``uint16`` plane
with the hole pixels set to 0 (RNON: stage 1 only). Scores (:mod:`rnon_engine.metrics`) are
taken in ``[0, 1]`` units of the ground-truth plane's own 0.1-99.9 percentile map: PSNR
and SSIM over the whole plane (PSNR capped at 100 dB), L1 over the hole pixels.
Writes ``results.md`` and ``results.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np


def _unit(truth: np.ndarray, values: np.ndarray) -> np.ndarray:
    from rnon_engine.inference.intensity import intensity_map

    return intensity_map(truth, np.ones(truth.shape, bool)).to_unit(values).astype(np.float64)


def evaluate(methods: dict, planes: np.ndarray, masks: dict) -> dict:
    """Mean PSNR / SSIM / hole L1 per method and bucket (scored by ``score_repair``)."""
    from rnon_engine.metrics import score_repair

    out: dict = {}
    for label, inp in methods.items():
        for bucket, holes in masks.items():
            scores = []
            for i, hole in enumerate(holes):
                truth = planes[i % len(planes)]
                damaged = truth.copy()
                damaged[hole] = 0
                result = inp.inpaint(damaged, hole, stages="repair", channel_axis=None)
                sc = score_repair(_unit(truth, truth), _unit(truth, result), hole)
                scores.append((sc["psnr"], sc["ssim"], sc["l1"]))
            out[(label, bucket)] = np.mean(scores, axis=0).tolist()
            print(label, bucket, out[(label, bucket)], flush=True)
    return out


def markdown(results: dict, labels: list[str], buckets: list[str]) -> str:
    """The PSNR / SSIM / L1 table, one row per method, one column per bucket."""
    head = "| method | " + " | ".join(f"{b} PSNR / SSIM / L1" for b in buckets) + " |"
    lines = [head, "|---" * (len(buckets) + 1) + "|"]
    for label in labels:
        cells = [
            "{:.2f} / {:.4f} / {:.4f}".format(*results[(label, b)])
            for b in buckets  # noqa: UP032
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--init", required=True, help="repair weights to start from ('default' or path)")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--train-planes", type=int, default=24)
    p.add_argument("--test-planes", type=int, default=8)
    p.add_argument("--per-bucket", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--trainable",
        help="override repair.trainable: comma list of patterns, or 'all' (default: the config's)",
    )
    p.add_argument("--lr", type=float, default=None, help="override repair.optim.lr")
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)

    import torch

    from rnon_engine.inference.inpainter import Inpainter
    from rnon_engine.samples import fluorescence_planes
    from rnon_engine.train.finetune import finetune
    from rnon_engine.train.masks import make_eval_masks

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    shape = (args.size, args.size)
    train = fluorescence_planes(args.train_planes, shape, seed=1)
    test = fluorescence_planes(args.test_planes, shape, seed=2)
    masks = make_eval_masks(shape, args.per_bucket, seed=0)

    overrides: dict = {}
    if args.trainable is not None:
        overrides["repair.trainable"] = [] if args.trainable == "all" else args.trainable.split(",")
    if args.lr is not None:
        overrides["repair.optim.lr"] = args.lr
    steps: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    weights = finetune(
        [train],
        init=args.init,
        name="bench-finetune",
        minutes=args.minutes,
        channel_axis=None,
        out_dir=args.out,
        overrides=overrides,
        device="cpu",
        progress=lambda s, _t, loss: steps.append((s, loss)),
        overwrite=True,
    )
    train_s = time.perf_counter() - t0
    losses = [v for _, v in steps]
    k = max(1, len(losses) // 10)
    loss_first, loss_last = float(np.mean(losses[:k])), float(np.mean(losses[-k:]))
    print(
        f"fine-tune: {len(steps)} steps in {train_s:.0f} s, "
        f"loss {loss_first:.4f} -> {loss_last:.4f}"
    )

    methods = {
        "OpenCV Telea": Inpainter.from_pretrained("telea"),
        "OpenCV Navier-Stokes": Inpainter.from_pretrained("ns"),
        "scikit-image biharmonic": Inpainter.from_pretrained("biharmonic"),
        "RNON before (base weights)": Inpainter.from_pretrained(args.init, device="cpu"),
        "RNON after fine-tune": Inpainter.from_pretrained(str(weights), device="cpu"),
    }
    results = evaluate(methods, test, masks)
    buckets = list(masks)
    table = markdown(results, list(methods), buckets)
    command = "python benchmarks/bench_finetune.py " + shlex.join(argv or sys.argv[1:])
    text = (
        f"{table}\n\nFine-tune: {len(steps)} steps in {train_s:.0f} s; mean training loss of "
        f"the first / last 10 % of steps {loss_first:.4f} / {loss_last:.4f}. "
        f"{args.test_planes} held-out planes, {args.per_bucket} masks per bucket.\n\n"
        f"Command: `{command}`\n"
    )
    (args.out / "results.md").write_text(text)
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "steps": len(steps),
                "train_seconds": train_s,
                "loss_first": loss_first,
                "loss_last": loss_last,
                "results": {f"{m} | {b}": v for (m, b), v in results.items()},
                "command": command,
            },
            indent=1,
        )
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
