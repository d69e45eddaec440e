"""Training throughput (samples per second) of the trainer's configurations.

Measures, with the real :class:`rnon_engine.train.Trainer` and batch sources (seeded
crops, scale jitter, flips and free-form masks from ``make_sources``) on synthetic images
written to a temporary folder:

* ``cpu-lite`` on the CPU, stage 1 (repair) at each crop size of its schedule (128, 192,
  256) and stage 2 (optimize, on a frozen stage-1 export) at its final crop size;
* ``paper`` on CUDA when a GPU is present (skipped otherwise). The paper's perceptual and
  style terms need the ImageNet VGG/DenseNet weights; when torchvision's cache lacks them
  the benchmark uses randomly initialised feature networks of the same architecture
  (``*_weights: random``), which cost the same time.

For every setting: a few warm-up steps, then timed steps; a step's time includes building
its batch (the trainer's ``num_workers`` from the config) and one generator and, when the
adversarial term is on, one discriminator update. Reported: median and best seconds per
step, samples per second from the median (batch size / step time) and from compute alone
(``train_step`` without building the batch).

Usage::

    python benchmarks/bench_training.py                  # writes docs/benchmarks.md
    python benchmarks/bench_training.py --steps 2 --no-write
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _report import write_section  # noqa: E402


def synthetic_images(folder: Path, n: int = 12, side: int = 384, seed: int = 0) -> Path:
    """Write ``n`` smooth-plus-texture RGB PNGs of ``side``² into ``folder`` (two sources)."""
    import cv2

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    for i in range(n):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        f = rng.uniform(1, 6, 3)
        base = np.stack(
            [0.5 + 0.4 * np.sin(f[c] * 2 * np.pi * (x + y * (c + 1) / 3)) for c in range(3)], -1
        )
        noise = cv2.GaussianBlur(rng.random((side, side, 3)), (0, 0), 2.0)
        img = np.clip(0.8 * base + 0.4 * (noise - 0.5), 0, 1)
        cv2.imwrite(str(sub / f"img{i:02d}.png"), (img * 255).astype(np.uint8)[..., ::-1])
    return folder


def _config(name: str, overrides: dict):
    from rnon_engine.train.config import config_path, load_config

    return load_config(config_path(name), overrides)


def measure(
    config_name: str,
    stage: str,
    crop: int,
    data: Path,
    out: Path,
    device: str,
    warmup: int,
    steps: int,
    overrides: dict | None = None,
    repair_weights: Path | None = None,
) -> dict:
    """Warm up, then time ``steps`` trainer steps; returns the figures of one row."""
    from rnon_engine.train.batches import make_sources
    from rnon_engine.train.trainer import Trainer

    ov = {"data.crop_size": crop, "data.crop_schedule": [], **(overrides or {})}
    config = _config(config_name, ov)
    stage_cfg = getattr(config, stage)
    train, _ = make_sources(config, stage_cfg.batch_size, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = Trainer(config, stage, out, train, device=device, repair_weights=repair_weights)
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    for s in range(warmup):
        trainer.train_step(train.batch(s))
    sync()
    total, compute = [], []
    for s in range(warmup, warmup + steps):
        t0 = time.perf_counter()
        batch = train.batch(s)
        t1 = time.perf_counter()
        trainer.train_step(batch)
        sync()
        t2 = time.perf_counter()
        total.append(t2 - t0)
        compute.append(t2 - t1)
    trainer.step = warmup + steps
    if stage == "repair":
        trainer.export()
    med, med_c = statistics.median(total), statistics.median(compute)
    return {
        "config": config_name,
        "stage": stage,
        "device": str(trainer.device),
        "amp": trainer.amp,
        "crop": crop,
        "batch": stage_cfg.batch_size,
        "median_s": med,
        "best_s": min(total),
        "samples_per_s": stage_cfg.batch_size / med,
        "compute_samples_per_s": stage_cfg.batch_size / med_c,
        "steps": steps,
        "export": trainer.export_path,
    }


def _paper_features() -> dict:
    """``*_weights: random`` overrides when the ImageNet weights are not in the cache."""
    from rnon_engine.errors import RnonError
    from rnon_engine.train.features import imagenet_weights_file

    try:
        for kind in ("vgg16", "vgg19", "densenet121"):
            if not imagenet_weights_file(kind).is_file():
                raise FileNotFoundError(kind)
    except (RnonError, FileNotFoundError, OSError):
        return {
            f"{stage}.loss.{net}_weights": "random"
            for stage, nets in (
                ("repair", ("vgg16", "densenet")),
                ("optimize", ("vgg19", "densenet")),
            )
            for net in nets
        }
    return {}


def table(rows: list[dict]) -> str:
    """Markdown table of the measured rows."""
    lines = [
        "| config | stage | device | crop | batch | s / step (median, best) "
        "| samples / s | samples / s (compute only) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        dev = r["device"] + (" (AMP)" if r["amp"] else "")
        lines.append(
            f"| {r['config']} | {r['stage']} | {dev} | {r['crop']}² | {r['batch']} | "
            f"{r['median_s']:.2f}, {r['best_s']:.2f} | {r['samples_per_s']:.2f} | "
            f"{r['compute_samples_per_s']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; writes its section of docs/benchmarks.md unless --no-write."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--crops", default="128,192,256", help="cpu-lite crop sizes")
    p.add_argument("--warmup", type=int, default=2, help="warm-up steps per setting")
    p.add_argument("--steps", type=int, default=4, help="timed steps per setting")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-optimize", action="store_true", help="skip the stage-2 row")
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    crops = [int(c) for c in args.crops.split(",") if c]
    rows: list[dict] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
        tmp = Path(tmp)
        data = synthetic_images(tmp / "images")
        out = tmp / "run"
        for crop in crops:
            rows.append(
                measure("cpu-lite", "repair", crop, data, out, "cpu", args.warmup, args.steps)
            )
            print(table(rows[-1:]).splitlines()[-1], flush=True)
        if not args.no_optimize and crops:
            rw = rows[-1]["export"]
            rows.append(
                measure(
                    "cpu-lite",
                    "optimize",
                    max(crops),
                    data,
                    out,
                    "cpu",
                    args.warmup,
                    args.steps,
                    repair_weights=rw,
                )
            )
            print(table(rows[-1:]).splitlines()[-1], flush=True)
        if torch.cuda.is_available():
            feats = _paper_features()
            if feats:
                notes.append(
                    "`paper` ran with randomly initialised feature networks (`*_weights: "
                    "random`): the ImageNet weights are not in torchvision's cache here; the "
                    "cost is the same."
                )
            gout = tmp / "gpu"
            r = measure("paper", "repair", 256, data, gout, "cuda", args.warmup, args.steps, feats)
            rows.append(r)
            if not args.no_optimize:
                rows.append(
                    measure(
                        "paper",
                        "optimize",
                        256,
                        data,
                        gout,
                        "cuda",
                        args.warmup,
                        args.steps,
                        feats,
                        repair_weights=r["export"],
                    )
                )
        else:
            notes.append("`paper` on GPU: skipped, this machine has no CUDA GPU.")
    body = [
        "Training throughput of the trainer (`Trainer.train_step` plus building the batch "
        "with the run's own data pipeline) on 12 synthetic 384² RGB images. cpu-lite: the "
        f"config's batch size, {args.warmup} warm-up and {args.steps} timed steps per row; "
        "stage 2 trains on a frozen stage-1 export.",
        "",
        table(rows),
        "",
        f"Torch threads: {torch.get_num_threads()}. "
        "**The CPU was shared** with a background training run of the default model and "
        "other users while this was measured, so the CPU figures are lower bounds of what "
        "the machine gives alone; compare rows with each other only loosely.",
        "",
        *[f"- {n}" for n in notes],
    ]
    text = "\n".join(body)
    print(text)
    if not args.no_write:
        cmd = "python benchmarks/bench_training.py" + (
            " " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:] else ""
        )
        write_section("Training throughput", text, cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
