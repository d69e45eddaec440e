"""The two-stage RNON trainer: stage 1 (repair G + D), stage 2 (optimize G + D).

(Over 600 lines on purpose: one class whose step, checkpoint, export, validation and loop
share its state; the device and distributed helpers at the top are small.)

One :class:`Trainer` trains one stage. Stage 2 trains on the outputs of a frozen stage-1
generator. Each step's batch is a pure function of ``(seed, step)`` (see
:class:`~rnon_engine.train.batches.BatchSource`), so a run that is stopped and resumed
from its checkpoint continues exactly as if it had never stopped.

Data-parallel training: launched with ``torchrun``, every process takes its share of each
global batch, gradients are averaged by DDP, and only rank 0 logs and writes files.
BatchNorm statistics stay per process (as in plain DDP).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import logging
import math
import os
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from rnon_engine.device import resolve_device
from rnon_engine.errors import ConfigError
from rnon_engine.nn.registry import create_model
from rnon_engine.nn.weights import EXPORT_NAMES, load_model, save_weights
from rnon_engine.train.batches import BatchSource
from rnon_engine.train.config import StageConfig, TrainConfig, config_to_dict

__all__ = ["Trainer", "DistInfo", "setup_distributed", "STAGES"]

log = logging.getLogger(__name__)

STAGES = {
    "repair": ("rnon-repair", "rnon-repair-disc"),
    "optimize": ("rnon-optimize", "rnon-optimize-disc"),
}


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the process that logs and writes files."""
        return self.rank == 0


def setup_distributed() -> DistInfo:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Trainer:
    """Trains one stage of RNON and writes its run directory.

    Run directory layout (``out``)::

        config.yaml                       resolved configuration
        stats.jsonl                       one JSON line per logged step, every loss term by name
        tb/                               TensorBoard events
        images/<stage>_<step>.png         masked input | stage 1 | [stage 2 |] target
        checkpoints/<stage>_last.pt       full state (models, optimisers, scaler, step, RNG)
        weights/<stage>_generator.safetensors   exported generator (engine format)

    Args:
        config: The run's configuration.
        stage: ``"repair"`` or ``"optimize"``.
        out: Run directory.
        data: Training batches.
        val: Optional fixed validation batches (PSNR/SSIM in the hole are logged).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``...
        repair_weights: Stage 2 only: the frozen stage-1 generator (default: this run's export).
        init_weights: Start the generator from these weights (fine-tuning). Its
            architecture then comes from the weights' metadata; keys of the stage's
            ``model`` section must agree with it (else :class:`ConfigError`).
        init_step: The step to count from (continuing a run from its exported weights).
        dist_info: Rank information (from :func:`setup_distributed`).
        deterministic: On the CPU, switch torch to deterministic algorithms (process-wide).
            That imports ``torch._inductor`` and triton; inside napari (the Fine-tune
            widget) importing triton next to an OpenGL context crashed, so it passes False.

    The stage's ``trainable`` patterns select the generator parameters that train (see
    :class:`~rnon_engine.train.config.StageConfig`); the others are frozen.
    """

    def __init__(
        self,
        config: TrainConfig,
        stage: str,
        out: str | Path,
        data: BatchSource,
        *,
        val: BatchSource | None = None,
        device: str | None = "auto",
        repair_weights: str | Path | None = None,
        init_weights: str | Path | None = None,
        init_step: int = 0,
        dist_info: DistInfo | None = None,
        deterministic: bool = True,
    ) -> None:
        if stage not in STAGES:
            raise ConfigError(f"stage must be one of {sorted(STAGES)}, got {stage!r}")
        self.config = config
        self.stage = stage
        self.stage_cfg: StageConfig = getattr(config, stage)
        self.out = Path(out)
        self.data = data
        self.val = val
        self.dist = dist_info or DistInfo()
        self.device = resolve_device(device, local_rank=self.dist.local_rank)
        self.amp = bool(config.amp and self.device.type == "cuda")
        torch.manual_seed(config.seed)
        if self.device.type == "cpu" and deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)

        gen_name, disc_name = STAGES[stage]
        if init_weights is not None:
            self.g_raw = load_model(init_weights).train()
            if self.g_raw.model_name != gen_name:
                raise ConfigError(
                    f"--init weights are a {self.g_raw.model_name!r} model; stage {stage!r} "
                    f"trains {gen_name!r}"
                )
            _check_model_agrees(stage, self.stage_cfg.model, self.g_raw, init_weights)
        else:
            self.g_raw = create_model(gen_name, **self.stage_cfg.model)
        self.d_raw = create_model(disc_name, **self.stage_cfg.disc)
        self.frozen_bn = _freeze(self.g_raw, self.stage_cfg.trainable, stage)
        self.g_raw.to(self.device)
        self.d_raw.to(self.device)
        self.repair_frozen: nn.Module | None = None
        if stage == "optimize":
            path = (
                Path(repair_weights)
                if repair_weights
                else self.out / "weights" / EXPORT_NAMES["repair"]
            )
            if not path.is_file():
                raise ConfigError(
                    f"stage 2 trains on a frozen stage-1 generator, but {path} does not exist: "
                    "train stage 1 first (--stage repair) or pass its weights"
                )
            self.repair_frozen = load_model(path, self.device)
            self.repair_frozen.requires_grad_(False)
            self.repair_weights = path

        self.teacher: nn.Module | None = None
        if self.stage_cfg.distill > 0:
            assert self.stage_cfg.teacher is not None  # StageConfig checks it
            self.teacher = load_model(self.stage_cfg.teacher, self.device).eval()
            if self.teacher.model_name != gen_name:
                raise ConfigError(
                    f"{stage}.teacher is a {self.teacher.model_name!r} model; stage {stage!r} "
                    f"distils a {gen_name!r} teacher"
                )
            self.teacher.requires_grad_(False)

        self.loss = _build_loss(stage, self.stage_cfg).to(self.device)
        self.use_adv = self.stage_cfg.loss.adv > 0
        oc = self.stage_cfg.optim
        self.opt_g = torch.optim.Adam(
            [p for p in self.g_raw.parameters() if p.requires_grad],
            lr=oc.lr,
            betas=oc.betas,
            weight_decay=oc.weight_decay,
        )
        self.opt_d = torch.optim.Adam(
            self.d_raw.parameters(),
            lr=oc.d_lr or oc.lr,
            betas=oc.betas,
            weight_decay=oc.weight_decay,
        )
        self.g_ema: nn.Module | None = None
        if self.stage_cfg.ema > 0:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.g_ema = AveragedModel(
                self.g_raw,
                multi_avg_fn=get_ema_multi_avg_fn(self.stage_cfg.ema),
                use_buffers=True,
            )
            self.g_ema.eval()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            if self.device.type == "cuda":  # SyncBatchNorm needs CUDA; on CPU BN stays per rank
                self.g_raw = nn.SyncBatchNorm.convert_sync_batchnorm(self.g_raw)
                self.d_raw = nn.SyncBatchNorm.convert_sync_batchnorm(self.d_raw)
            self.g: nn.Module = DDP(self.g_raw, device_ids=ids)
            self.d: nn.Module = DDP(self.d_raw, device_ids=ids)
        else:
            self.g, self.d = self.g_raw, self.d_raw
        self.step = init_step
        self._writer = None

    @property
    def g_eval(self) -> nn.Module:
        """The generator that is validated and exported: the EMA average when ``ema`` is on."""
        return self.g_raw if self.g_ema is None else self.g_ema.module

    def _set_lr(self) -> None:
        """Apply the schedule's factor for the update made at :attr:`step`."""
        oc = self.stage_cfg.optim
        factor = oc.lr_factor(self.step)
        for opt, base in ((self.opt_g, oc.lr), (self.opt_d, oc.d_lr or oc.lr)):
            for group in opt.param_groups:
                group["lr"] = base * factor

    # ------------------------------------------------------------------ paths
    @property
    def checkpoint_path(self) -> Path:
        """Where the full training state of this stage is kept."""
        return self.out / "checkpoints" / f"{self.stage}_last.pt"

    @property
    def export_path(self) -> Path:
        """Where the generator is exported in the engine's weights format."""
        return self.out / "weights" / EXPORT_NAMES[self.stage]

    # ------------------------------------------------------------------ one step
    def _autocast(self):  # noqa: ANN202
        if self.amp:
            return torch.autocast("cuda", dtype=torch.float16)
        return nullcontext()

    def _inputs(self, image: Tensor, valid: Tensor) -> tuple[tuple[Tensor, ...], Tensor | None]:
        """The generator's arguments for a batch, and (stage 2) the stage-1 composite."""
        damaged = image * valid
        if self.stage == "repair":
            return (damaged, valid), None
        assert self.repair_frozen is not None
        with torch.no_grad():
            first = self.repair_frozen(damaged, valid)
            first = valid * image + (1 - valid) * first
        if getattr(getattr(self.g_raw, "config", None), "guided", False):
            guide = guide_fill(self.g_raw.config.guide, first, valid)
            return (first, guide, valid), first
        return (first,), first

    def _forward(
        self, image: Tensor, valid: Tensor, g: nn.Module | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Generator output for a batch, and (stage 2) the stage-1 input it refined.

        ``g`` defaults to the (possibly DDP-wrapped) training generator; rank-0-only work
        (images, validation) passes the bare module so no collective op is started.
        """
        g = self.g if g is None else g
        args, first = self._inputs(image, valid)
        return g(*args), first

    def _target(self, image: Tensor, valid: Tensor, args: tuple[Tensor, ...]) -> Tensor:
        """The loss's target: the truth, mixed in the holes with the teacher's output."""
        if self.teacher is None:
            return image
        with torch.no_grad():
            taught = self.teacher(*args).float()
        return image + self.stage_cfg.distill * (1 - valid) * (taught - image)

    def train_step(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """One discriminator update (when the adversarial term is on) and one generator update."""
        image = batch["image"].to(self.device, non_blocking=True)
        valid = batch["valid"].to(self.device, non_blocking=True)
        target_valid = batch.get("target_valid")
        if target_valid is not None:
            target_valid = target_valid.to(self.device)
        self.g.train()
        for bn in self.frozen_bn:  # frozen layers keep their running statistics
            bn.eval()
        self.d.train()
        metrics: dict[str, float] = {}
        self._set_lr()
        with self._autocast():
            args, _ = self._inputs(image, valid)
            out = self.g(*args)
            target = self._target(image, valid, args)
        if self.use_adv:
            from rnon_engine.train.loss_terms import discriminator_loss

            with self._autocast():
                d_real = self.d(image)
                d_fake = self.d(out.detach())
                d_loss, d_metrics = discriminator_loss(d_real.float(), d_fake.float())
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler.scale(d_loss).backward()
            self._clip(self.d_raw, self.opt_d)
            self.scaler.step(self.opt_d)
            metrics.update({f"d/{k.removeprefix('d_')}": float(v) for k, v in d_metrics.items()})
        with self._autocast():
            d_fake_g = self.d_raw(out) if self.use_adv else None
            d_real_g = None
            if self.use_adv and self.stage_cfg.loss.adv_mode == "eq9":
                with torch.no_grad():
                    d_real_g = self.d_raw(image)
        g_loss, terms = self.loss(
            out.float(),
            target,
            valid,
            d_fake_logits=None if d_fake_g is None else d_fake_g.float(),
            d_real_logits=None if d_real_g is None else d_real_g.float(),
            target_valid=target_valid,
        )
        if not torch.isfinite(g_loss):
            raise FloatingPointError(
                f"generator loss is {float(g_loss)} at step {self.step}: {terms}"
            )
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(g_loss).backward()
        self._clip(self.g_raw, self.opt_g)
        self.scaler.step(self.opt_g)
        self.scaler.update()
        if self.g_ema is not None:
            self.g_ema.update_parameters(self.g_raw)
        metrics.update({f"g/{k}": float(v) for k, v in terms.items()})
        metrics["lr"] = self.opt_g.param_groups[0]["lr"]
        metrics["g/total"] = float(g_loss.detach())
        return metrics

    def _clip(self, model: nn.Module, opt: torch.optim.Optimizer) -> None:
        clip = self.stage_cfg.optim.grad_clip
        if clip:
            self.scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs (tensors, numbers, strings: loadable with weights_only)."""
        state = {
            "stage": self.stage,
            "step": self.step,
            "config": config_to_dict(self.config),
            "g": self.g_raw.state_dict(),
            "d": self.d_raw.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        if self.g_ema is not None:
            state["g_ema"] = self.g_ema.state_dict()
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def save_checkpoint(self) -> Path | None:
        """Write the checkpoint atomically (rank 0 only)."""
        if not self.dist.is_main:
            return None
        path = self.checkpoint_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)
        return path

    def load_checkpoint(self, path: str | Path | None = None) -> None:
        """Restore models, optimisers, scaler, step and RNG from a checkpoint."""
        path = Path(path or self.checkpoint_path)
        if not path.is_file():
            raise ConfigError(f"--resume: no checkpoint at {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("stage") != self.stage:
            raise ConfigError(f"{path} is a {state.get('stage')!r} checkpoint, not {self.stage!r}")
        self.g_raw.load_state_dict(state["g"])
        self.d_raw.load_state_dict(state["d"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.scaler.load_state_dict(state["scaler"])
        if self.g_ema is not None:
            if "g_ema" in state:
                self.g_ema.load_state_dict(state["g_ema"])
            else:  # a checkpoint made without ema: the average starts from its weights
                self.g_ema.module.load_state_dict(self.g_raw.state_dict())
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.step = int(state["step"])

    def export(self) -> Path | None:
        """Write the generator in the engine's weights format (rank 0 only)."""
        if not self.dist.is_main:
            return None
        meta: dict[str, Any] = {
            "step": self.step,
            "stage": self.stage,
            "config_name": self.config.name,
            "train_config": config_to_dict(self.config),
        }
        if self.stage == "optimize":
            meta["repair_weights"] = str(self.repair_weights)
        if self.g_ema is not None:
            meta["ema"] = self.stage_cfg.ema
        return save_weights(self.g_eval, self.export_path, **meta)

    # ------------------------------------------------------------------ logging
    def _log(self, metrics: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        record = {"stage": self.stage, "step": self.step, "time": time.time(), **metrics}
        with open(self.out / "stats.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.out / "tb"))
        for k, v in metrics.items():
            if isinstance(v, int | float) and math.isfinite(v):
                self._writer.add_scalar(f"{self.stage}/{k}", v, self.step)

    @torch.no_grad()
    def save_images(self, batch: dict[str, Tensor]) -> Path | None:
        """PNG grid, one row per sample: masked input | stage 1 | (stage 2) | target."""
        if not self.dist.is_main:
            return None
        from torchvision.utils import save_image

        image = batch["image"][:4].to(self.device)
        valid = batch["valid"][:4].to(self.device)
        self.g_raw.eval()
        with self._autocast():
            out, first = self._forward(image, valid, self.g_eval)
        out = valid * image + (1 - valid) * out.float()
        cols = [
            image * valid
            + (1 - valid) * torch.tensor([1.0, 0.0, 1.0], device=self.device).view(1, 3, 1, 1)
        ]
        cols += [first, out] if first is not None else [out]
        cols.append(image)
        grid = torch.stack(cols, dim=1).flatten(0, 1).float().clamp(0, 1)
        path = self.out / "images" / f"{self.stage}_{self.step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, path, nrow=len(cols), padding=2)
        return path

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean PSNR/SSIM/L1 of the composited output on the fixed validation batches."""
        from rnon_engine.metrics import hole_l1, psnr, ssim

        assert self.val is not None
        self.g_raw.eval()
        g = self.g_eval
        scores: dict[str, list[float]] = {}
        for i in range(len(self.val)):
            batch = self.val.batch(i)
            image, valid = batch["image"].to(self.device), batch["valid"].to(self.device)
            with self._autocast():
                out, _ = self._forward(image, valid, g)
            out = valid * image + (1 - valid) * out.float()
            for j in range(image.shape[0]):
                res = out[j].permute(1, 2, 0).cpu().numpy()
                truth = image[j].permute(1, 2, 0).cpu().numpy()
                hole = (valid[j, 0] < 0.5).cpu().numpy()
                if not hole.any():
                    continue
                scores.setdefault("psnr", []).append(min(psnr(truth, res), 100.0))
                scores.setdefault("ssim", []).append(ssim(truth, res))
                scores.setdefault("hole_l1", []).append(hole_l1(truth, res, hole))
        return {f"val/{k}": float(sum(v) / len(v)) for k, v in scores.items()}

    # ------------------------------------------------------------------ loop
    def fit(
        self,
        max_steps: int | None = None,
        max_minutes: float | None = None,
        resume: bool = False,
        progress: bool = True,
        *,
        should_stop: Callable[[], bool] | None = None,
        on_step: Callable[[int, int, dict[str, float]], None] | None = None,
    ) -> int:
        """Train until ``max_steps`` (default: the stage's ``steps``), the time budget, or a signal.

        Args:
            max_steps: Last step (absolute, so a resumed run counts from its checkpoint).
            max_minutes: Wall-clock budget of this call.
            resume: Continue from :attr:`checkpoint_path`.
            progress: Show a tqdm bar (rank 0).
            should_stop: Polled after every step; True stops the loop like a signal does
                (``stop_reason == "stopped"``), with a checkpoint and an export.
            on_step: Called after every step as ``on_step(step, total, metrics)``.

        Returns:
            The step reached. A checkpoint and an export are written on every way out.
        """
        cfg = self.config
        total = self.stage_cfg.steps if max_steps is None else max_steps
        if resume:
            self.load_checkpoint()
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            import yaml

            (self.out / "config.yaml").write_text(
                yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
            )
        deadline = None if max_minutes is None else time.monotonic() + 60.0 * max_minutes
        bar = None
        if progress and self.dist.is_main:
            from tqdm import tqdm

            bar = tqdm(
                total=total,
                initial=self.step,
                desc=f"{self.stage}",
                unit="step",
                dynamic_ncols=True,
            )
        t_last, n_last = time.monotonic(), self.step
        reason = "steps"
        with _StopFlag() as stop:
            while self.step < total:
                batch = self.data.batch(self.step)
                metrics = self.train_step(batch)
                self.step += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{metrics['g/total']:.4f}", refresh=False)
                if on_step is not None:
                    on_step(self.step, total, metrics)
                if self.step % cfg.log_every == 0:
                    now = time.monotonic()
                    rate = (self.step - n_last) * self.data.batch_size / max(now - t_last, 1e-9)
                    t_last, n_last = now, self.step
                    metrics["samples_per_s"] = rate
                    metrics["crop"] = int(batch["image"].shape[-1])
                    if self.val is not None and self.step % cfg.export_every == 0:
                        metrics.update(self.validate())
                    self._log(metrics)
                if self.step % cfg.image_every == 0:
                    self.save_images(batch)
                if self.step % cfg.export_every == 0:
                    self.export()
                if self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                if stop.signal is not None:
                    reason = f"signal {stop.signal}"
                    break
                if should_stop is not None and should_stop():
                    reason = "stopped"
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    reason = "time budget"
                    break
        if bar is not None:
            bar.close()
        self.save_checkpoint()
        self.export()
        if self._writer is not None:
            self._writer.flush()
        if self.dist.is_main:
            log.info("stage %s stopped at step %d (%s)", self.stage, self.step, reason)
        self.stop_reason = reason
        return self.step


def guide_fill(method: str, images: Tensor, valid: Tensor) -> Tensor:
    """The classical fill a guided stage 2 reads, for a batch ``[N,C,H,W]`` in [0, 1].

    Computed on the CPU by :func:`rnon_engine.inference.classical.guide_fill`, the function
    inference uses, so training and inference see the same guide.
    """
    from rnon_engine.inference.classical import guide_fill as fill_windows

    x = images.detach().float().cpu().numpy()
    holes = (valid[:, 0] < 0.5).cpu().numpy()
    return torch.from_numpy(fill_windows(method, x, holes)).to(images.device, images.dtype)


def _check_model_agrees(
    stage: str, wanted: dict[str, Any], model: nn.Module, path: str | Path
) -> None:
    """Refuse a config whose ``model`` keys contradict the architecture of ``--init`` weights."""
    have = dataclasses.asdict(model.config) if dataclasses.is_dataclass(model.config) else {}
    for key, value in wanted.items():
        if key in have and have[key] != value:
            raise ConfigError(
                f"config key '{stage}.model.{key}' is {value!r} but the --init weights {path} "
                f"have {key}={have[key]!r}; the architecture comes from the weights, so remove "
                f"'{key}' from '{stage}.model' or set it to {have[key]!r}"
            )
        if key not in have:
            raise ConfigError(
                f"config key '{stage}.model.{key}' is not an option of the --init weights' "
                f"model ({sorted(have)})"
            )


def _freeze(model: nn.Module, patterns: tuple[str, ...], stage: str) -> list[nn.Module]:
    """Freeze the parameters no pattern matches; return the BatchNorm layers left frozen.

    A pattern matches a parameter name by :func:`fnmatch.fnmatchcase`, or as a dotted
    prefix (``decoder`` matches ``decoder.3.conv.weight``). No patterns: everything trains.

    Raises:
        ConfigError: A pattern matches no parameter (a typo would otherwise freeze all).
    """
    if not patterns:
        return []
    names = [n for n, _ in model.named_parameters()]

    def matches(pattern: str, name: str) -> bool:
        return fnmatch.fnmatchcase(name, pattern) or name.startswith(pattern.rstrip(".") + ".")

    for pattern in patterns:
        if not any(matches(pattern, n) for n in names):
            tops = sorted({n.split(".")[0] for n in names})
            raise ConfigError(
                f"config key '{stage}.trainable': {pattern!r} matches no parameter of the "
                f"generator; use module names {tops} or glob patterns over names like "
                f"{names[0]!r}"
            )
    for name, param in model.named_parameters():
        param.requires_grad_(any(matches(p, name) for p in patterns))
    frozen_bn = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            own = list(module.parameters(recurse=False))
            if not any(p.requires_grad for p in own):
                frozen_bn.append(module)
    return frozen_bn


def _build_loss(stage: str, cfg: StageConfig) -> nn.Module:
    from rnon_engine.train.losses import build_stage_loss

    return build_stage_loss(stage, cfg.loss)
