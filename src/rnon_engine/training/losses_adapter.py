"""Build each stage's weighted loss from its configuration section."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnon_engine.losses import (
    OptimizeLoss,
    OptimizeLossWeights,
    RepairLoss,
    RepairLossWeights,
    hole_loss,
)
from rnon_engine.training.config import OptimizeLossConfig, RepairLossConfig

__all__ = ["StageLoss", "build_stage_loss"]


class StageLoss(nn.Module):
    """A stage's total loss with the trainer's extras.

    Adds the optional stage-2 hole L1 term, and keeps pixels that may not serve as targets
    (``target_valid == 0``, e.g. a user's dead pixels) out of every term: there both the
    output and the target are replaced by the detached output. Their difference is then
    zero, no gradient flows through them, and the excluded target values enter no term,
    not even through the windows of SSIM, total variation or feature networks that reach
    over them from neighbouring pixels (``torch.where``, so even NaN there is harmless).
    """

    def __init__(self, inner: nn.Module, extra_hole: float = 0.0) -> None:
        super().__init__()
        self.inner = inner
        self.extra_hole = extra_hole

    def forward(
        self,
        output: Tensor,
        target: Tensor,
        mask: Tensor,
        *,
        d_fake_logits: Tensor | None = None,
        d_real_logits: Tensor | None = None,
        target_valid: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        """Weighted loss and ``{term: value}``."""
        if target_valid is not None and bool((target_valid < 1).any()):
            keep = target_valid >= 0.5
            stand_in = output.detach()
            target = torch.where(keep, target, stand_in)
            output = torch.where(keep, output, stand_in)
        loss, terms = self.inner(
            output, target, mask, d_fake_logits=d_fake_logits, d_real_logits=d_real_logits
        )
        if self.extra_hole > 0:
            h = hole_loss(output, target, mask)
            terms["hole"] = float(h)
            loss = loss + self.extra_hole * h
        return loss, terms


def build_stage_loss(stage: str, cfg: RepairLossConfig | OptimizeLossConfig) -> StageLoss:
    """The loss module of ``stage`` configured by ``cfg``."""
    if stage == "repair":
        assert isinstance(cfg, RepairLossConfig)
        w = RepairLossWeights(
            valid=cfg.valid,
            hole=cfg.hole,
            per=cfg.perceptual,
            style=cfg.style,
            adv=cfg.adversarial,
            tv=cfg.tv,
            ssim=cfg.ssim,
            densenet_mix=cfg.densenet_weight,
            adv_mode=cfg.adversarial_variant,
            vgg16_weights=cfg.features,
            densenet_weights=cfg.features,
        )
        return StageLoss(RepairLoss(w))
    assert isinstance(cfg, OptimizeLossConfig)
    w = OptimizeLossWeights(
        con=cfg.content,
        per=cfg.perceptual,
        adv=cfg.adversarial,
        ssim=cfg.ssim,
        vgg_mix=cfg.vgg19_weight,
        densenet_mix=cfg.densenet_weight,
        vgg19_weights=cfg.features,
        densenet_weights=cfg.features,
    )
    return StageLoss(OptimizeLoss(w), extra_hole=cfg.hole)
