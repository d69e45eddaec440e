"""Training configuration: nested frozen dataclasses, loaded from YAML and validated.

Every key of a YAML file must name a field; every value must have the field's type and
pass its check. Anything else is refused with a :class:`~rnon_engine.errors.ConfigError`
naming the key path (``repair.loss.hole``) before any work starts.

The packaged configurations (``paper``, ``cpu-lite``, ``finetune``) are YAML files in
:data:`CONFIG_DIR`, shipped in the wheel; :func:`config_path` finds them by name.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rnon_engine.errors import ConfigError
from rnon_engine.train.losses import OptimizeLossWeights, RepairLossWeights

__all__ = [
    "CONFIG_DIR",
    "DataConfig",
    "OptimConfig",
    "StageConfig",
    "TrainConfig",
    "load_config",
    "config_from_dict",
    "config_path",
    "packaged_configs",
    "read_config",
    "config_to_dict",
]

#: Folder of the packaged YAML configurations (inside the package, so the wheel has them).
CONFIG_DIR = Path(__file__).parent / "configs"

FEATURE_CHOICES = ("imagenet", "random", "none")
"""Named feature-network sources; any other ``*_weights`` value must be an existing file."""


@dataclass(frozen=True)
class DataConfig:
    """How training samples are drawn.

    Attributes:
        crop_size: Side of the square training crops.
        crop_schedule: ``[[step, size], ...]``: from ``step`` on, crops have side ``size``
            (the paper's "resolution from small to large"); empty = always ``crop_size``.
        scale_jitter: Range of the random rescale applied before cropping.
        flips: Random horizontal flips.
        balance_sources: Give each top-level source folder the same sampling weight.
        mask_ratio: Hole ratio of the training masks, drawn uniformly in this range.
        fine_damage: Probability that a training mask is fine damage (dust, dead pixels,
            1-3 px scratches; :func:`rnon_engine.train.masks.fine_damage_mask`) instead of
            strokes and blobs. Validation masks are never fine damage (comparable curves).
        fine_ratio: Hole ratio range of the fine-damage masks.
        num_workers: DataLoader worker processes (0 = in the training process).
    """

    crop_size: int = 256
    crop_schedule: tuple[tuple[int, int], ...] = ()
    scale_jitter: tuple[float, float] = (0.5, 1.0)
    flips: bool = True
    balance_sources: bool = True
    mask_ratio: tuple[float, float] = (0.01, 0.6)
    fine_damage: float = 0.0
    fine_ratio: tuple[float, float] = (0.002, 0.03)
    num_workers: int = 0

    def __post_init__(self) -> None:
        _check(self.crop_size >= 16, "data.crop_size", "must be at least 16")
        sched = tuple((int(s), int(c)) for s, c in self.crop_schedule)
        object.__setattr__(self, "crop_schedule", sched)
        _check(
            all(c >= 16 for _, c in sched) and list(sched) == sorted(sched),
            "data.crop_schedule",
            "must be [[step, size], ...] sorted by step, sizes >= 16",
        )
        lo, hi = self.scale_jitter
        _check(0 < lo <= hi, "data.scale_jitter", "must be [low, high] with 0 < low <= high")
        lo, hi = self.mask_ratio
        _check(0 < lo < hi < 1, "data.mask_ratio", "must be [low, high] with 0 < low < high < 1")
        _check(0 <= self.fine_damage <= 1, "data.fine_damage", "must be a probability in [0, 1]")
        lo, hi = self.fine_ratio
        _check(0 < lo < hi < 1, "data.fine_ratio", "must be [low, high] with 0 < low < high < 1")
        _check(self.num_workers >= 0, "data.num_workers", "must be >= 0")


@dataclass(frozen=True)
class OptimConfig:
    """Adam settings (the paper: lr 2e-4, β = (0.5, 0.999), weight decay 1e-7) and schedule.

    The learning rate at step ``s`` is ``lr × lr_factor(s)`` (:meth:`lr_factor`): a linear
    warm-up over ``warmup_steps``, then constant (``schedule: constant``, the paper) or, with
    ``schedule: cosine``, constant until ``decay_start`` and a half cosine from ``lr`` down
    to ``min_lr`` over ``decay_steps`` steps, ``min_lr`` after that. It is a function of the
    step alone, so a resumed or continued run (``--continue-from``) picks it up where it was.
    The discriminator's rate follows the same factor.
    """

    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 1e-7
    d_lr: float | None = None
    grad_clip: float | None = None
    schedule: str = "constant"
    warmup_steps: int = 0
    decay_start: int = 0
    decay_steps: int = 0
    min_lr: float = 0.0

    def lr_factor(self, step: int) -> float:
        """Multiplier of ``lr`` (and ``d_lr``) for the update made at ``step`` (0-based)."""
        factor = 1.0
        if self.warmup_steps and step < self.warmup_steps:
            factor = (step + 1) / self.warmup_steps
        if self.schedule == "cosine" and step >= self.decay_start:
            t = min(1.0, (step - self.decay_start) / self.decay_steps)
            floor = self.min_lr / self.lr
            factor *= floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
        return factor

    def __post_init__(self) -> None:
        _check(self.lr > 0, "optim.lr", "must be > 0")
        _check(
            self.schedule in ("constant", "cosine"),
            "optim.schedule",
            f"must be 'constant' or 'cosine', got {self.schedule!r}",
        )
        _check(self.warmup_steps >= 0, "optim.warmup_steps", "must be >= 0")
        _check(self.decay_start >= 0, "optim.decay_start", "must be >= 0")
        _check(
            self.schedule != "cosine" or self.decay_steps >= 1,
            "optim.decay_steps",
            "must be >= 1 with schedule: cosine (the number of steps from lr to min_lr)",
        )
        _check(0 <= self.min_lr <= self.lr, "optim.min_lr", "must be in [0, lr]")
        _check(all(0 <= b < 1 for b in self.betas), "optim.betas", "must be in [0, 1)")
        _check(self.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
        _check(self.d_lr is None or self.d_lr > 0, "optim.d_lr", "must be > 0")
        _check(self.grad_clip is None or self.grad_clip > 0, "optim.grad_clip", "must be > 0")


@dataclass(frozen=True)
class StageConfig:
    """One stage: generator/discriminator options, loss, optimiser, steps.

    ``model`` overrides the generator's options; when training starts from existing
    weights (``--init``) the architecture comes from the weights' metadata and any key given
    here must agree with it. ``trainable`` names the generator parameters that train:
    each entry is a top-level module name (``encoder``, ``decoder``, ``head``), which
    matches every parameter under it, or an :mod:`fnmatch` pattern over parameter names
    (``decoder.[67].*``); empty = all. The others are frozen, and BatchNorm layers without
    a trainable parameter stay in eval mode (their running statistics do not move).
    ``ema`` > 0 keeps an exponential moving average of the generator's parameters and
    buffers (decay ``ema`` per step, :class:`torch.optim.swa_utils.AveragedModel`);
    validation, images and exports then use the average.
    ``teacher`` names the weights of a trained generator of the same stage and ``distill``
    > 0 distils it: the loss's target in the holes becomes ``(1 − distill)·truth +
    distill·teacher`` (knowledge distillation, e.g. of a shipped stage into a thinner one);
    the known pixels' target and the discriminator's real images stay the truth.
    """

    model: dict[str, Any] = field(default_factory=dict)
    disc: dict[str, Any] = field(default_factory=dict)
    loss: RepairLossWeights | OptimizeLossWeights = field(default_factory=RepairLossWeights)
    optim: OptimConfig = field(default_factory=OptimConfig)
    batch_size: int = 4
    steps: int = 100_000
    trainable: tuple[str, ...] = ()
    ema: float = 0.0
    teacher: str | None = None
    distill: float = 0.0

    def __post_init__(self) -> None:
        _check(self.batch_size >= 1, "batch_size", "must be >= 1")
        _check(0.0 <= self.distill <= 1.0, "distill", "must be in [0, 1]: 0 = off")
        _check(
            self.distill == 0 or self.teacher is not None,
            "teacher",
            "distill > 0 needs the teacher's weights file (e.g. the shipped stage's)",
        )
        _check(
            self.teacher is None or Path(self.teacher).is_file(),
            "teacher",
            f"must be an existing weights file, got {self.teacher!r}",
        )
        _check(0.0 <= self.ema < 1.0, "ema", "must be in [0, 1): 0 = off, e.g. 0.999")
        _check(self.steps >= 0, "steps", "must be >= 0")
        object.__setattr__(self, "trainable", tuple(self.trainable))
        _check(
            all(isinstance(t, str) and t.strip() for t in self.trainable),
            "trainable",
            "must be a list of non-empty parameter-name patterns (e.g. [decoder, head])",
        )


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run (both stages).

    Attributes:
        name: Free text naming the configuration.
        seed: Seed for models, data order, crops and masks.
        data: Sampling options.
        repair: Stage 1 (``model``/``disc`` are overrides for ``rnon-repair``/``rnon-repair-disc``).
        optimize: Stage 2 (overrides for ``rnon-optimize``/``rnon-optimize-disc``).
        amp: Mixed precision on CUDA (ignored on the CPU).
        checkpoint_every: Steps between checkpoints.
        log_every: Steps between lines in ``stats.jsonl``.
        image_every: Steps between PNG grids.
        export_every: Steps between exports of the generator weights.
    """

    name: str = "custom"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    repair: StageConfig = field(default_factory=StageConfig)
    optimize: StageConfig = field(default_factory=lambda: StageConfig(loss=OptimizeLossWeights()))
    amp: bool = True
    checkpoint_every: int = 500
    log_every: int = 10
    image_every: int = 500
    export_every: int = 500

    def __post_init__(self) -> None:
        for key in ("checkpoint_every", "log_every", "image_every", "export_every"):
            _check(getattr(self, key) >= 1, key, "must be >= 1")
        _check(isinstance(self.repair.loss, RepairLossWeights), "repair.loss", "wrong type")
        _check(isinstance(self.optimize.loss, OptimizeLossWeights), "optimize.loss", "wrong type")
        for stage in ("repair", "optimize"):
            loss = getattr(self, stage).loss
            for f in dataclasses.fields(loss):
                value = getattr(loss, f.name)
                if f.name.endswith("_weights") and value is not None:
                    _check(
                        str(value) in FEATURE_CHOICES or Path(value).is_file(),
                        f"{stage}.loss.{f.name}",
                        f"must be one of {FEATURE_CHOICES} or an existing weights file, "
                        f"got {value!r}",
                    )
        from rnon_engine.nn.registry import get_spec

        for stage, gen, disc in (
            ("repair", "rnon-repair", "rnon-repair-disc"),
            ("optimize", "rnon-optimize", "rnon-optimize-disc"),
        ):
            cfg: StageConfig = getattr(self, stage)
            for part, name in (("model", gen), ("disc", disc)):
                try:
                    get_spec(name).make_config(**getattr(cfg, part))
                except (ConfigError, TypeError, ValueError) as exc:
                    raise ConfigError(f"{stage}.{part}: {exc}") from None


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config key {key!r}: {message}")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML value to the annotated type ``tp``, or raise ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _convert(value, option, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"config key {key!r}: bad value {value!r}"
        )
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r}: expected a mapping, got {value!r}")
        return _build(tp, value, key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key {key!r}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"config key {key!r}: expected {len(args)} values, got {value!r}")
        return tuple(
            _convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"config key {key!r}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key!r}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key!r}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key!r}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"config key {key!r}: unsupported type {tp}")


def _build(cls: type, raw: dict[str, Any], prefix: str = "", loss_cls: type | None = None) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        where = f" in {prefix!r}" if prefix else ""
        raise ConfigError(f"unknown config key(s) {unknown}{where}; known keys: {sorted(names)}")
    kwargs = {}
    for name, value in raw.items():
        key = f"{prefix}.{name}" if prefix else name
        tp = hints[name]
        if cls is StageConfig and name == "loss":
            tp = loss_cls or RepairLossWeights
        if cls is TrainConfig and name in ("repair", "optimize"):
            lc = RepairLossWeights if name == "repair" else OptimizeLossWeights
            if not isinstance(value, dict):
                raise ConfigError(f"config key {key!r}: expected a mapping, got {value!r}")
            kwargs[name] = _build(StageConfig, {"loss": {}, **value}, key, lc)
            continue
        kwargs[name] = _convert(value, tp, key)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        msg = str(exc)
        if prefix and "config key '" in msg and f"'{prefix}." not in msg:
            # Sections name their keys from their own name ("optim.lr"); nested ones
            # ("repair.optim") add only the part before it.
            parent, _, last = prefix.rpartition(".")
            head = parent if parent and f"config key '{last}." in msg else prefix
            raise ConfigError(msg.replace("config key '", f"config key '{head}.", 1)) from None
        if prefix and "config key '" not in msg and prefix not in msg:
            raise ConfigError(f"config section {prefix!r}: {msg}") from None
        raise


def config_from_dict(raw: dict[str, Any]) -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a plain dict (e.g. parsed YAML)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a training config must be a mapping, got {type(raw).__name__}")
    return _build(TrainConfig, raw)


def packaged_configs() -> list[str]:
    """Names of the packaged configurations (the YAML files in :data:`CONFIG_DIR`)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def config_path(name: str | Path) -> Path:
    """``name`` itself if it is a file, else the packaged config of that name.

    Raises:
        ConfigError: Neither (the message lists the packaged names).
    """
    path = Path(name)
    if path.is_file():
        return path
    packaged = CONFIG_DIR / f"{name}.yaml"
    if packaged.is_file():
        return packaged
    raise ConfigError(
        f"config {str(name)!r} is neither a file nor a packaged config "
        f"({', '.join(packaged_configs())})"
    )


def read_config(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The raw mapping of a YAML config file with ``overrides`` (dotted keys) applied.

    Not validated: see :func:`load_config` and :func:`config_from_dict`.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return raw


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Load a YAML config file; ``overrides`` (dotted keys) are applied before validation."""
    path = Path(path)
    raw = read_config(path, overrides)
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain-dict form of a config (tuples as lists), for YAML and checkpoint metadata."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(config))
