"""Training loop of the stack model (``python -m training.stack_run``).

The stack network is small and its inputs are made per sample by numpy/OpenCV code
(:func:`rnon_engine.train.stacks.training_sample`: synthesis, alignment, fills), so it has
its own focused loop rather than the GAN trainer of the RNON generators: L1 loss on the
hole pixels an aligned neighbour knows (the network answers only for those), Adam with a
cosine learning-rate decay, a fixed validation set, ``stats.jsonl``, a resumable
checkpoint (model, optimiser, step; the data of step ``n`` is drawn from a generator
seeded by ``(seed, n)``, so a resumed run sees the same samples) and fp16 safetensors
exports.

Run directory layout::

    config.json             the resolved StackTrainConfig
    stats.jsonl             one line per log interval / validation
    checkpoint.pt           model + optimiser + step (torch.load(weights_only=True))
    weights/stack_repair.safetensors   the exported network (fp16, with its config)
    pictures.npz            the decoded training pictures (a cache)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from rnon_engine.errors import ConfigError

__all__ = ["StackTrainConfig", "load_pictures", "train_stack"]

WEIGHTS_NAME = "stack_repair.safetensors"


@dataclass(frozen=True)
class StackTrainConfig:
    """Hyper-parameters of a stack-model run.

    Attributes:
        steps: Optimiser steps.
        batch_size: Samples per step.
        crop: Side of the square training crops (px).
        k: Planes on each side of the synthetic stacks.
        slots: Neighbour slots each side of the network.
        width: Network width (:class:`~rnon_engine.nn.networks.stack.StackConfig`).
        lr: Peak learning rate (Adam), decayed by a cosine to ``lr / 20`` (2e-3 diverged
            in the first stack run: loss spikes after 200 steps).
        warmup: Linear warm-up steps.
        side: Training pictures are resized so that their shorter side is this (px),
            then each sample is rescaled by a random factor in ``[0.5, 1]``.
        val_samples: Size of the fixed validation set.
        val_every: Validate and export every this many steps.
        log_every: Log the mean training loss every this many steps.
        seed: Seed of the data.
        threads: Torch CPU threads.
    """

    steps: int = 4000
    batch_size: int = 8
    crop: int = 112
    k: int = 2
    slots: int = 2
    width: int = 32
    lr: float = 5e-4
    warmup: int = 200
    side: int = 288
    val_samples: int = 48
    val_every: int = 250
    log_every: int = 25
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        if self.crop * 2 > self.side:
            raise ValueError(f"side ({self.side}) must be at least twice crop ({self.crop})")
        if self.k < 1 or self.slots < 1:
            raise ValueError("k and slots must be >= 1")


def load_pictures(
    corpus: Path, split: str, side: int, kinds: tuple[str, ...] | None = None
) -> list[np.ndarray]:
    """Grayscale float32 pictures of a corpus split, shorter side ``side`` px.

    Args:
        corpus: A corpus folder with ``manifest.json`` (``pictures`` with ``split``,
            ``kind`` and ``written``).
        split: ``"train"`` or ``"val"``.
        side: Shorter side after resizing (pictures smaller than that are upscaled).
        kinds: Keep only these kinds (None: all).
    """
    manifest = json.loads((corpus / "manifest.json").read_text())
    out = []
    for pic in manifest["pictures"]:
        if pic.get("split") != split or (kinds and pic.get("kind") not in kinds):
            continue
        im = cv2.imread(str(corpus / pic["written"]), cv2.IMREAD_GRAYSCALE)
        if im is None:
            continue
        s = side / min(im.shape)
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
        im = cv2.resize(im, None, fx=s, fy=s, interpolation=interp)
        if im.std() < 4:  # nearly constant (an empty sky frame): nothing to learn
            continue
        out.append(im.astype(np.float32) / 255.0)
    return out


#: Share of training samples drawn from telescope pictures (most of the corpus's training
#: pictures, but mostly dark sky: drawn less often than their number).
TELESCOPE_SHARE = 0.2


def _cached_pictures(corpus: Path, run: Path, side: int) -> tuple[list, list]:
    """(non-telescope pictures, telescope pictures) of the train split, cached in the run."""
    cache = run / "pictures.npz"
    if not cache.is_file():
        manifest = json.loads((corpus / "manifest.json").read_text())
        kinds = sorted({p.get("kind", "") for p in manifest["pictures"]} - {"telescope"})
        main = load_pictures(corpus, "train", side, kinds=tuple(kinds))
        tel = load_pictures(corpus, "train", side, kinds=("telescope",))
        tmp = run / "pictures.tmp.npz"
        arrays = {f"m{i}": p for i, p in enumerate(main)}
        arrays.update({f"t{i}": p for i, p in enumerate(tel)})
        np.savez(tmp, **arrays)
        os.replace(tmp, cache)
    with np.load(cache) as z:
        main = [z[n] for n in sorted((f for f in z.files if f[0] == "m"), key=lambda f: int(f[1:]))]
        tel = [z[n] for n in sorted((f for f in z.files if f[0] == "t"), key=lambda f: int(f[1:]))]
    return main, tel


def _sample(
    pics: list[np.ndarray],
    rng: np.random.Generator,
    cfg: StackTrainConfig,
    tel: list[np.ndarray] | None = None,
) -> object:
    from rnon_engine.train.stacks import training_sample

    def pick() -> np.ndarray:
        src = tel if tel and rng.random() < TELESCOPE_SHARE else pics
        im = src[int(rng.integers(len(src)))]
        f = float(rng.uniform(0.5, 1.0))
        if min(im.shape) * f < cfg.crop + 2:
            f = (cfg.crop + 2) / min(im.shape)
        return cv2.resize(im, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)

    return training_sample(pick(), pick(), rng, crop=cfg.crop, k=cfg.k, slots=cfg.slots)


def _batch(samples: list) -> tuple:
    import torch

    x = torch.from_numpy(np.stack([s.x for s in samples]))
    t = torch.from_numpy(np.stack([s.target for s in samples]))[:, None]
    w = torch.from_numpy(np.stack([s.weight for s in samples]))[:, None]
    return x, t, w


def _lr(cfg: StackTrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    lo = cfg.lr / 20
    return lo + (cfg.lr - lo) * 0.5 * (1 + math.cos(math.pi * p))


def _psnr(pred, target, weight) -> float:  # noqa: ANN001 - torch tensors
    mse = float(((pred - target) ** 2 * weight).sum() / weight.sum().clamp(min=1))
    return 10 * math.log10(1 / max(mse, 1e-12))


def train_stack(
    corpus: Path,
    run: Path,
    cfg: StackTrainConfig,
    *,
    resume: bool = False,
    max_minutes: float | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Train (or continue training) the stack network; returns the exported weights path.

    Raises:
        ConfigError: The run folder holds another run's config (without ``resume``), or
            ``resume`` without a checkpoint.
    """
    import torch

    from rnon_engine.nn.registry import create_model
    from rnon_engine.nn.weights import save_weights

    torch.set_num_threads(cfg.threads)
    run.mkdir(parents=True, exist_ok=True)
    ckpt = run / "checkpoint.pt"
    conf_path = run / "config.json"
    if resume:
        if not ckpt.is_file():
            raise ConfigError(f"--resume: no checkpoint.pt in {run}; start without --resume")
        saved = json.loads(conf_path.read_text())
        cfg = StackTrainConfig(**{**saved, "steps": cfg.steps})
    elif ckpt.is_file():
        raise ConfigError(f"{run} already holds a run: pass --resume, or choose another --out")
    conf_path.write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")

    t0 = time.time()
    pics, tel = _cached_pictures(corpus, run, cfg.side)
    log(f"{len(pics)} + {len(tel)} telescope training pictures ({time.time() - t0:.0f} s)")
    vrng = np.random.default_rng([cfg.seed, 10**9])
    vpics = load_pictures(corpus, "val", cfg.side, kinds=("art", "planet-map", "telescope"))
    val = [_sample(vpics, vrng, cfg) for _ in range(cfg.val_samples)]
    log(f"validation set: {len(val)} samples from {len(vpics)} non-photo validation pictures")

    model = create_model("rnon-repair-stack", slots=cfg.slots, width=cfg.width)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step = 0
    if resume:
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = int(state["step"])
        log(f"resumed at step {step}")
    stats = (run / "stats.jsonl").open("a")

    def save(step: int) -> Path:
        tmp = run / "checkpoint.tmp.pt"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, tmp)
        os.replace(tmp, ckpt)
        return save_weights(
            model, run / "weights" / WEIGHTS_NAME, dtype=torch.float16, step=step,
            trained_on="synthetic stacks from the corpus train split (grayscale)",
        )

    def validate(step: int) -> dict:
        model.eval()
        with torch.no_grad():
            x, t, w = _batch(val)
            pred = model(x).clamp(0, 1)
            base = x[:, 4 * cfg.slots + 3 : 4 * cfg.slots + 4]
            out = {"step": step, "val_psnr": _psnr(pred, t, w), "val_base_psnr": _psnr(base, t, w)}
        model.train()
        return out

    deadline = None if max_minutes is None else time.time() + 60 * max_minutes
    losses: list[float] = []
    base_losses: list[float] = []
    tick = time.time()
    model.train()
    while step < cfg.steps:
        rng = np.random.default_rng([cfg.seed, step])
        x, t, w = _batch([_sample(pics, rng, cfg, tel) for _ in range(cfg.batch_size)])
        for g in opt.param_groups:
            g["lr"] = _lr(cfg, step)
        pred = model(x)
        loss = ((pred - t).abs() * w).sum() / w.sum().clamp(min=1)
        base = x[:, 4 * cfg.slots + 3 : 4 * cfg.slots + 4]
        base_losses.append(float(((base - t).abs() * w).sum() / w.sum().clamp(min=1)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        losses.append(float(loss.detach()))
        if step % cfg.log_every == 0:
            rec = {
                "step": step, "loss_l1": float(np.mean(losses)),
                "base_l1": float(np.mean(base_losses)), "lr": _lr(cfg, step - 1),
                "sec_per_step": (time.time() - tick) / len(losses),
            }
            stats.write(json.dumps(rec) + "\n")
            stats.flush()
            log(json.dumps(rec))
            losses, base_losses, tick = [], [], time.time()
        if step % cfg.val_every == 0 or step == cfg.steps:
            rec = validate(step)
            stats.write(json.dumps(rec) + "\n")
            stats.flush()
            log(json.dumps(rec))
            save(step)
        if deadline is not None and time.time() > deadline:
            log(f"time budget reached at step {step}")
            break
    return save(step)
