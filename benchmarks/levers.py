"""Cheap quality levers on the validation split: blends with a classical fill, flip averaging.

Scores, with the protocol of ``python -m training.evaluate`` (256² centre crops, the paper's
four hole-ratio buckets, fixed seeded masks, PSNR/SSIM over the whole image), fills that
need no training:

* ``net``: the default model, stage 1 only; ``net+s2``: both stages;
* the classical fills (``biharmonic``, ``telea``);
* ``blend a``: ``a · net + (1 − a) · biharmonic`` in the holes, for each ``--alpha``;
* ``flips``: the mean of stage 1 over the four flips (none, h, v, both);
* ``flips blend a``: the same blend with the flip mean.

Every fill is computed once per case and the combinations are made from those, so the
rows are paired (same images, same masks). ``<val-photos>``: a folder holding the validation
photographs of the corpus (its ``manifest.json`` entries with ``split: val``, ``kind: photo``)::

    python benchmarks/levers.py --data <val-photos> --per-bucket 40 --out levers

Writes ``results.md`` (mean ± standard error per bucket) and ``results.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np


def _flip(a: np.ndarray, code: int) -> np.ndarray:
    if code & 1:
        a = a[:, ::-1]
    if code & 2:
        a = a[::-1]
    return np.ascontiguousarray(a)


def fills(inp, classical: dict, damaged: np.ndarray, hole: np.ndarray) -> dict[str, np.ndarray]:
    """Float fills (``H×W×3`` in 0–255) of one case: the network's, its flips', classical."""
    out = {
        "net": inp.inpaint(damaged, hole, stages="repair").astype(np.float64),
        "net+s2": inp.inpaint(damaged, hole, stages="both").astype(np.float64),
    }
    flips = [out["net"]]
    for code in (1, 2, 3):
        res = inp.inpaint(_flip(damaged, code), _flip(hole, code), stages="repair")
        flips.append(_flip(res, code).astype(np.float64))
    out["flips"] = np.mean(flips, axis=0)
    for name, method in classical.items():
        out[name] = method.inpaint(damaged, hole).astype(np.float64)
    return out


def combine(base: dict[str, np.ndarray], alphas: list[float]) -> dict[str, np.ndarray]:
    """Add the blends of the network (and of its flip mean) with biharmonic."""
    rows = dict(base)
    for a in alphas:
        rows[f"blend {a:g}"] = a * base["net"] + (1 - a) * base["biharmonic"]
        rows[f"flips blend {a:g}"] = a * base["flips"] + (1 - a) * base["biharmonic"]
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and write the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="folder of validation images")
    p.add_argument("--weights", default="default", help="repair weights (default: packaged)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--per-bucket", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--alpha", type=float, nargs="+", default=[0.5, 0.6, 0.7])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the training package
    import torch
    from training.evaluate import MAX_PSNR, build_samples, load_images

    from rnon_engine.inference.inpainter import Inpainter
    from rnon_engine.metrics import score_repair
    from rnon_engine.train.masks import BUCKETS, make_eval_masks

    torch.set_num_threads(args.threads)
    inp = Inpainter.from_pretrained(args.weights, device="cpu")
    classical = {m: Inpainter.from_pretrained(m) for m in ("biharmonic", "telea")}
    images, _ = load_images(args.data, args.size)
    samples = build_samples(images, make_eval_masks(args.size, args.per_bucket, args.seed))
    scores: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for i, s in enumerate(samples):
        damaged = s.damaged
        rows = combine(fills(inp, classical, damaged, s.hole), args.alpha)
        for name, values in rows.items():
            result = s.truth.copy()
            result[s.hole] = np.clip(np.round(values[s.hole]), 0, 255).astype(np.uint8)
            sc = score_repair(s.truth, result, s.hole, max_psnr=MAX_PSNR)
            scores.setdefault(name, {}).setdefault(s.bucket, []).append((sc["psnr"], sc["ssim"]))
        print(f"{i + 1}/{len(samples)}", file=sys.stderr, flush=True)

    buckets = list(BUCKETS)
    lines = [
        "Command: `python benchmarks/levers.py "
        + shlex.join(sys.argv[1:] if argv is None else argv)
        + "`",
        "",
        "| fill | " + " | ".join(f"{b} PSNR / SSIM" for b in buckets) + " |",
        "|---" * (len(buckets) + 1) + "|",
    ]
    summary: dict[str, dict[str, list[float]]] = {}
    for name, per in scores.items():
        cells = []
        for b in buckets:
            arr = np.asarray(per[b])
            mean, se = arr.mean(axis=0), arr.std(axis=0, ddof=1) / np.sqrt(len(arr))
            summary.setdefault(name, {})[b] = [*mean.tolist(), *se.tolist()]
            cells.append(f"{mean[0]:.2f} ± {se[0]:.2f} / {mean[1]:.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    (args.out / "results.json").write_text(json.dumps(summary, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
