"""The RNON losses (paper eq. 1-14, as settled by the project's SPEC).

Conventions: images are ``[N, C, H, W]`` floats in ``[0, 1]``; masks are ``[N, 1, H, W]`` or
``[N, C, H, W]`` with 1 = valid (known) pixel, 0 = hole; discriminator outputs are logits.
Every L1 term is a mean, i.e. normalised by the element count of the tensor it is taken
over (the masked L1 terms by the image's element count ``N·C·H·W``, as in Liu et al.).

The terms are pure functions in :mod:`rnon_engine.train.loss_terms`; this module weighs
them into each stage's total.

The two weighted totals:

* :class:`RepairLoss` (stage 1, eq. 1)::

      L = 2·valid + 12·hole + 0.04·per + 100·(style_out + style_com) + 100·adv + 0.3·tv
      per   = Σ_nets mix_net · Σ_layers (‖Ψ(I_out) − Ψ(I_real)‖₁ + ‖Ψ(I_com) − Ψ(I_real)‖₁)
      style_out = Σ_nets mix_net · Σ_layers ‖G(Ψ(I_out)) − G(Ψ(I_real))‖₁  (style_com: I_com)

  with VGG16 (pool1, pool2, pool3, mix 1) and DenseNet-121 (conv0, pool2, pool3, mix 30).
  The paper gives the 1 : 30 network mix for the perceptual term only (eq. 6); the style
  terms use the same mix (a project choice).
* :class:`OptimizeLoss` (stage 2, eq. 11)::

      L = 40·con + per + 0.75·adv,   per = 1.25·L_VGG19(block3_conv4) + 50·L_DenseNet(pool2)

  where each ``L_net`` has the form of eq. 4 with ``I_opt`` in place of ``I_inp`` (the
  paper: "similar to formula (4)"). The paper's text names DenseNet's ``pool2_conv``; the
  SPEC says ``pool2``, the default here; ``densenet_layers=("pool2_conv",)`` selects the
  paper's reading.

Both can add an optional ``ssim`` term, ``1 − SSIM(I_com, I_real)`` (weight 0 by default).
Both are :class:`StageLoss` subclasses: one shared ``forward`` (checks, composite, feature
maps, weighted sum) runs the stage's list of terms, :attr:`StageLoss.TERMS`. Its
``target_valid`` argument keeps pixels that may not serve as targets (a user's dead pixels)
out of every term (:func:`exclude_targets`).

Adversarial terms: the default generator term is the standard non-saturating GAN loss
``BCE(D(I_out), 1)``; ``adv_mode="eq9"`` selects the paper's eq. 9,
``mean |σ(D(I_out)) − σ(D(I_real))|``, on the discriminator's probabilities (the SRGAN
discriminator the paper uses ends with a sigmoid; ours returns logits). The discriminator
is trained with :func:`discriminator_loss`, ``BCE(D(I_real), 1) + BCE(D(I_out), 0)``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from rnon_engine.errors import ConfigError
from rnon_engine.train.features import FEATURE_LAYERS, FeatureExtractor, build_feature_extractor
from rnon_engine.train.loss_terms import (
    adversarial_term,
    check_mask,
    check_tensor,
    check_triplet,
    composite,
    content_loss,
    hole_loss,
    perceptual_loss,
    ssim_loss,
    style_loss,
    total_variation_loss,
    valid_loss,
)

__all__ = [
    "ADV_MODES",
    "OptimizeLoss",
    "OptimizeLossWeights",
    "RepairLoss",
    "RepairLossWeights",
    "StageLoss",
    "build_stage_loss",
    "exclude_targets",
]

ADV_MODES = ("bce", "eq9")

# --------------------------------------------------------------------------- weighted totals

FeatureWeights = str | os.PathLike | None


def _check_weights_obj(obj: Any, numeric: Sequence[str]) -> None:
    for name in numeric:
        v = getattr(obj, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ConfigError(f"loss weight {name} must be a finite number >= 0, got {v!r}")
    if obj.adv_mode not in ADV_MODES:
        raise ConfigError(f"adv_mode must be one of {ADV_MODES}, got {obj.adv_mode!r}")
    for f in dataclasses.fields(obj):
        if f.name.endswith("_layers"):
            kind = _LAYER_FIELD_KIND[f.name]
            value = getattr(obj, f.name)
            if isinstance(value, str):
                value = (value,)
            value = tuple(value)
            unknown = [n for n in value if n not in FEATURE_LAYERS[kind]]
            if not value or unknown:
                raise ConfigError(
                    f"{f.name}: unknown {kind} layer(s) {unknown or '(none given)'}; choose "
                    f"from {sorted(FEATURE_LAYERS[kind])}"
                )
            object.__setattr__(obj, f.name, value)
        elif f.name.endswith("_weights"):
            v = getattr(obj, f.name)
            if v is not None and not isinstance(v, (str, os.PathLike)):
                raise ConfigError(
                    f"{f.name} must be 'imagenet', 'random', 'none', None or a file path, got {v!r}"
                )


_LAYER_FIELD_KIND = {
    "vgg16_layers": "vgg16",
    "vgg19_layers": "vgg19",
    "densenet_layers": "densenet121",
}


class _FromMapping:
    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Any:
        """Build from a mapping (e.g. a YAML section), refusing unknown keys.

        Args:
            data: Field names to values; missing fields keep their defaults.

        Returns:
            The dataclass instance.

        Raises:
            ConfigError: An unknown key or a bad value.
        """
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown {cls.__name__} key(s) {unknown}; known keys: {sorted(known)}"
            )
        return cls(**data)


@dataclass(frozen=True)
class RepairLossWeights(_FromMapping):
    """Weights of stage 1's loss (eq. 1) and its feature networks; paper values by default.

    A weight of 0 disables its term (it is then not computed). Feature-network fields take
    ``"imagenet"`` (torchvision cache), ``"random"`` (seeded random init: the terms then
    only regularise, they carry no ImageNet meaning), ``"none"``/``None`` (no network: its
    perceptual and style parts are skipped) or a path to a state-dict file.

    Attributes:
        valid: Weight of :func:`valid_loss` (2).
        hole: Weight of :func:`hole_loss` (12).
        per: Weight of the perceptual term (0.04).
        style: Weight of each style term, ``style_out`` and ``style_com`` (100).
        adv: Weight of the generator's adversarial term (100).
        tv: Weight of :func:`total_variation_loss` on ``I_com`` (0.3).
        ssim: Weight of ``1 − SSIM(I_com, I_real)`` (0: not in the paper).
        vgg_mix: Share of VGG16 in the perceptual and style terms (eq. 6: 1).
        densenet_mix: Share of DenseNet-121 in the perceptual and style terms (eq. 6: 30).
        adv_mode: ``"bce"`` (standard non-saturating) or ``"eq9"`` (the paper's).
        vgg16_weights: VGG16 weights source.
        densenet_weights: DenseNet-121 weights source.
        vgg16_layers: VGG16 layers (pool1, pool2, pool3).
        densenet_layers: DenseNet-121 layers (conv0, pool2, pool3).
        feature_seed: Seed of randomly initialised feature networks.
    """

    valid: float = 2.0
    hole: float = 12.0
    per: float = 0.04
    style: float = 100.0
    adv: float = 100.0
    tv: float = 0.3
    ssim: float = 0.0
    vgg_mix: float = 1.0
    densenet_mix: float = 30.0
    adv_mode: str = "bce"
    vgg16_weights: FeatureWeights = "imagenet"
    densenet_weights: FeatureWeights = "imagenet"
    vgg16_layers: tuple[str, ...] = ("pool1", "pool2", "pool3")
    densenet_layers: tuple[str, ...] = ("conv0", "pool2", "pool3")
    feature_seed: int = 0

    def __post_init__(self) -> None:
        _check_weights_obj(
            self, ("valid", "hole", "per", "style", "adv", "tv", "ssim", "vgg_mix", "densenet_mix")
        )


@dataclass(frozen=True)
class OptimizeLossWeights(_FromMapping):
    """Weights of stage 2's loss (eq. 11, 13) and its feature networks; paper values by default.

    Feature-network fields as in :class:`RepairLossWeights`.

    Attributes:
        con: Weight of :func:`content_loss` (40).
        hole: Weight of :func:`hole_loss` on ``I_opt`` (0: not in the paper; eq. 12 covers
            only the valid region, which alone teaches stage 2 nothing about the hole).
        per: Weight of the perceptual term (1).
        adv: Weight of the generator's adversarial term (0.75).
        ssim: Weight of ``1 − SSIM(I_com, I_real)`` (0: not in the paper).
        vgg_mix: Share of VGG19 in the perceptual term (eq. 13: 1.25).
        densenet_mix: Share of DenseNet-121 in the perceptual term (eq. 13: 50).
        adv_mode: ``"bce"`` (eq. 14 read as the standard GAN loss) or ``"eq9"``.
        vgg19_weights: VGG19 weights source.
        densenet_weights: DenseNet-121 weights source.
        vgg19_layers: VGG19 layers (block3_conv4, post-ReLU).
        densenet_layers: DenseNet-121 layers (the SPEC's pool2; the paper's text names
            ``pool2_conv``).
        feature_seed: Seed of randomly initialised feature networks.
    """

    con: float = 40.0
    hole: float = 0.0
    per: float = 1.0
    adv: float = 0.75
    ssim: float = 0.0
    vgg_mix: float = 1.25
    densenet_mix: float = 50.0
    adv_mode: str = "bce"
    vgg19_weights: FeatureWeights = "imagenet"
    densenet_weights: FeatureWeights = "imagenet"
    vgg19_layers: tuple[str, ...] = ("block3_conv4",)
    densenet_layers: tuple[str, ...] = ("pool2",)
    feature_seed: int = 0

    def __post_init__(self) -> None:
        _check_weights_obj(self, ("con", "hole", "per", "adv", "ssim", "vgg_mix", "densenet_mix"))


def exclude_targets(output: Tensor, target: Tensor, target_valid: Tensor) -> tuple[Tensor, Tensor]:
    """Keep pixels that may not serve as targets out of a loss.

    Where ``target_valid`` is 0 (e.g. a user's dead pixels) both the output and the target
    are replaced by the detached output. Their difference is then zero, no gradient flows
    through them, and the excluded target values enter no term, not even through the
    windows of SSIM, total variation or feature networks that reach over them from
    neighbouring pixels (``torch.where``, so even NaN there is harmless).

    Args:
        output: ``[N, C, H, W]``.
        target: ``[N, C, H, W]``.
        target_valid: ``[N, 1|C, H, W]``, 1 = may be a target (values < 0.5 are excluded).

    Returns:
        ``(output, target)``, the inputs themselves when no pixel is excluded.
    """
    if not bool((target_valid < 1).any()):
        return output, target
    keep = target_valid >= 0.5
    stand_in = output.detach()
    return torch.where(keep, output, stand_in), torch.where(keep, target, stand_in)


@dataclass
class _Inputs:
    """One call's checked inputs and composite; the feature maps once first needed."""

    output: Tensor
    target: Tensor
    mask: Tensor
    comp: Tensor
    d_fake_logits: Tensor | None
    d_real_logits: Tensor | None
    feats: dict[str, tuple[list[Tensor], list[Tensor], list[Tensor]]] | None = None


class _Terms:
    """Raw term values by name and the weighted parts of the total, in the order added."""

    def __init__(self) -> None:
        self.raw: dict[str, Tensor] = {}
        self.weighted: list[Tensor] = []

    def add(self, name: str, value: Tensor, weight: float | None = None) -> None:
        """Record ``value`` as ``name``; with a ``weight``, ``weight·value`` joins the total."""
        self.raw[name] = value
        if weight is not None:
            self.weighted.append(weight * value)


class StageLoss(nn.Module):
    """A stage's weighted total: the shared checks, bookkeeping and feature networks.

    Subclasses set :attr:`TERMS`, the stage's terms in the order they are computed and
    reported: ``(weight field, function)`` pairs; a term whose weight is 0 is skipped.

    Args:
        weights: The stage's loss weights (a frozen dataclass).
        nets: ``{kind: (weights source, layers, mix)}`` of the feature networks; a mix of
            0 builds no network.
    """

    TERMS: ClassVar[tuple[tuple[str, _TermFn], ...]] = ()

    def __init__(
        self,
        weights: RepairLossWeights | OptimizeLossWeights,
        nets: Mapping[str, tuple[FeatureWeights, Sequence[str], float]],
    ) -> None:
        super().__init__()
        self.weights = weights
        self.nets = nn.ModuleDict()
        self.mix: dict[str, float] = {}
        self.skipped: dict[str, str] = {}
        for kind, (source, layers, mix) in nets.items():
            if mix == 0:
                self.skipped[f"per_{kind}"] = "network mix 0 or no feature term"
                continue
            net = build_feature_extractor(kind, source, layers, seed=weights.feature_seed)
            if net is None:
                self.skipped[f"per_{kind}"] = "no feature network (weights none)"
            else:
                self.nets[kind] = net
                self.mix[kind] = mix
        for name, _ in self.TERMS:
            if getattr(weights, name) == 0:
                self.skipped[name] = "weight 0"
        if not self.nets:
            for name, _ in self.TERMS:
                if name in _FEATURE_TERMS and getattr(weights, name) > 0:
                    self.skipped[name] = "no feature network"

    @property
    def feature_sources(self) -> dict[str, str]:
        """Where each feature network's weights came from (for logs and model cards)."""
        return {k: net.weights_source for k, net in self.nets.items()}

    def forward(
        self,
        output: Tensor,
        target: Tensor,
        mask: Tensor,
        d_fake_logits: Tensor | None = None,
        d_real_logits: Tensor | None = None,
        *,
        target_valid: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        """Compute the stage's weighted loss (eq. 1 or eq. 11).

        Args:
            output: Generator output ``[N, 3, H, W]`` in [0, 1] (stage 1: the raw
                ``I_inp``; stage 2: ``I_opt``).
            target: Ground truth ``I_real`` ``[N, 3, H, W]``.
            mask: ``[N, 1|3, H, W]``, 1 = valid.
            d_fake_logits: Discriminator logits of ``output`` (needed when ``adv > 0``).
            d_real_logits: Discriminator logits of ``target`` (needed by ``adv_mode="eq9"``).
            target_valid: Optional ``[N, 1|3, H, W]``, 0 = pixel that may not serve as a
                target: kept out of every term (see :func:`exclude_targets`).

        Returns:
            ``(loss, metrics)``: the weighted scalar and ``{term: float}`` (raw values,
            plus ``total``).
        """
        w = self.weights
        check_triplet(output, target, mask)
        check_tensor(output, "output", channels=3)
        if target_valid is not None:
            check_mask(target_valid, target, "target_valid")
        if w.adv > 0:  # refuse before any work
            if d_fake_logits is None or (w.adv_mode == "eq9" and d_real_logits is None):
                adversarial_term(w.adv_mode, d_fake_logits, d_real_logits)
        if target_valid is not None:
            output, target = exclude_targets(output, target, target_valid)
        mask = mask.to(output.dtype)
        x = _Inputs(
            output, target, mask, composite(output, target, mask), d_fake_logits, d_real_logits
        )
        acc = _Terms()
        for name, add_term in self.TERMS:
            weight = getattr(w, name)
            if weight > 0:
                add_term(self, x, weight, acc)
        return self._finish(acc.raw, acc.weighted, output)

    def _features(self, x: _Inputs) -> dict[str, tuple[list[Tensor], list[Tensor], list[Tensor]]]:
        """``{kind: (Ψ(I_out), Ψ(I_com), Ψ(I_real))}``, computed once per call."""
        if x.feats is None:
            res = {}
            n = x.output.shape[0]
            for kind, net in self.nets.items():
                assert isinstance(net, FeatureExtractor)
                both = net(torch.cat([x.output, x.comp]))
                with torch.no_grad():
                    real = net(x.target)
                res[kind] = ([f[:n] for f in both], [f[n:] for f in both], real)
            x.feats = res
        return x.feats

    @staticmethod
    def _finish(
        terms: dict[str, Tensor], weighted: list[Tensor], ref: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        total = torch.stack([t.float() for t in weighted]).sum() if weighted else ref.new_zeros(())
        names = ["total", *terms]
        vals = torch.stack([total.detach(), *(t.detach().float() for t in terms.values())])
        return total, dict(zip(names, vals.tolist(), strict=True))


_TermFn = Callable[[StageLoss, _Inputs, float, _Terms], None]

#: Terms that need the feature networks (skipped, and said so, when there are none).
_FEATURE_TERMS = ("per", "style")


def _add_valid(loss: StageLoss, x: _Inputs, weight: float, acc: _Terms) -> None:
    acc.add("valid", valid_loss(x.output, x.target, x.mask), weight)


def _add_con(loss: StageLoss, x: _Inputs, weight: float, acc: _Terms) -> None:
    acc.add("con", content_loss(x.output, x.target, x.mask), weight)


def _add_hole(loss: StageLoss, x: _Inputs, weight: float, acc: _Terms) -> None:
    acc.add("hole", hole_loss(x.output, x.target, x.mask), weight)


def _add_per(loss: StageLoss, x: _Inputs, weight: float, acc: _Terms) -> None:
    """``per`` (= Σ mix·per_net, weighted) and each ``per_<net>`` (reported only)."""
    if not loss.nets:
        return
    per = x.output.new_zeros((), dtype=torch.float32)
    for kind, (fo, fc, fr) in loss._features(x).items():
        acc.add(f"per_{kind}", perceptual_loss(fo, fc, fr))
        per = per + loss.mix[kind] * acc.raw[f"per_{kind}"]
    acc.add("per", per, weight)


def _add_style(loss: StageLoss, x: _Inputs, weight: float, acc: _Terms) -> None:
    """``style_out`` and ``style_com``, each mixed over the networks like ``per``."""
    if not loss.nets:
        return
    feats = loss._features(x)
    s_out = sum(loss.mix[k] * style_loss(fo, fr) for k, (fo, _, fr) in feats.items())
    s_com = sum(loss.mix[k] * style_loss(fc, fr) for k, (_, fc, fr) in feats.items())
    acc.add("style_out", s_out, weight)  # type: ignore[arg-type]
    acc.add("style_com", s_com, weight)  # type: ignore[arg-type]


def _add_adv(loss: StageLoss, x: _Inputs, weight: float, acc: _Terms) -> None:
    term = adversarial_term(loss.weights.adv_mode, x.d_fake_logits, x.d_real_logits)
    acc.add("adv", term, weight)


def _add_tv(loss: StageLoss, x: _Inputs, weight: float, acc: _Terms) -> None:
    acc.add("tv", total_variation_loss(x.comp, x.mask), weight)


def _add_ssim(loss: StageLoss, x: _Inputs, weight: float, acc: _Terms) -> None:
    acc.add("ssim", ssim_loss(x.comp, x.target), weight)


class RepairLoss(StageLoss):
    """Stage 1's weighted loss (eq. 1), holding its frozen feature networks.

    Term names in the metrics (raw, unweighted values, plus ``total``, the weighted sum):
    ``valid``, ``hole``, ``per`` (= Σ mix·per_net), ``per_vgg16``, ``per_densenet121``,
    ``style_out``, ``style_com`` (each mixed over the networks like ``per``), ``adv``,
    ``tv``, ``ssim``. A term whose weight is 0, or that has no feature network, is not
    computed and absent from the metrics; :attr:`skipped` says why. Call it as
    :meth:`StageLoss.forward`.

    Args:
        weights: The loss weights; defaults to the paper's (needs the ImageNet files).
    """

    TERMS = (
        ("valid", _add_valid),
        ("hole", _add_hole),
        ("per", _add_per),
        ("style", _add_style),
        ("adv", _add_adv),
        ("tv", _add_tv),
        ("ssim", _add_ssim),
    )

    def __init__(self, weights: RepairLossWeights | None = None) -> None:
        w = RepairLossWeights() if weights is None else weights
        need = w.per > 0 or w.style > 0
        super().__init__(
            w,
            {
                "vgg16": (w.vgg16_weights, w.vgg16_layers, w.vgg_mix if need else 0),
                "densenet121": (
                    w.densenet_weights,
                    w.densenet_layers,
                    w.densenet_mix if need else 0,
                ),
            },
        )


class OptimizeLoss(StageLoss):
    """Stage 2's weighted loss (eq. 11), holding its frozen feature networks.

    Term names in the metrics (raw values, plus ``total``): ``con``, ``hole``, ``per``
    (= 1.25·per_vgg19 + 50·per_densenet121 by default), ``per_vgg19``, ``per_densenet121``,
    ``adv``, ``ssim``. Skipped terms are absent; :attr:`skipped` says why. Call it as
    :meth:`StageLoss.forward`.

    Args:
        weights: The loss weights; defaults to the paper's (needs the ImageNet files).
    """

    TERMS = (
        ("con", _add_con),
        ("hole", _add_hole),
        ("per", _add_per),
        ("adv", _add_adv),
        ("ssim", _add_ssim),
    )

    def __init__(self, weights: OptimizeLossWeights | None = None) -> None:
        w = OptimizeLossWeights() if weights is None else weights
        need = w.per > 0
        super().__init__(
            w,
            {
                "vgg19": (w.vgg19_weights, w.vgg19_layers, w.vgg_mix if need else 0),
                "densenet121": (
                    w.densenet_weights,
                    w.densenet_layers,
                    w.densenet_mix if need else 0,
                ),
            },
        )


def build_stage_loss(stage: str, weights: RepairLossWeights | OptimizeLossWeights) -> StageLoss:
    """The loss module of ``stage`` (``"repair"``: eq. 1, ``"optimize"``: eq. 11)."""
    if stage == "repair":
        if not isinstance(weights, RepairLossWeights):
            raise ConfigError(
                f"stage 'repair' needs RepairLossWeights, got {type(weights).__name__}"
            )
        return RepairLoss(weights)
    if stage == "optimize":
        if not isinstance(weights, OptimizeLossWeights):
            raise ConfigError(
                f"stage 'optimize' needs OptimizeLossWeights, got {type(weights).__name__}"
            )
        return OptimizeLoss(weights)
    raise ConfigError(f"stage must be 'repair' or 'optimize', got {stage!r}")
