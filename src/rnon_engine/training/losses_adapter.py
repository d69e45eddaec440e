"""Each stage's weighted loss, with the trainer's handling of excluded target pixels."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnon_engine.losses import OptimizeLoss, OptimizeLossWeights, RepairLoss, RepairLossWeights

__all__ = ["StageLoss", "build_stage_loss"]


class StageLoss(nn.Module):
    """A stage's total loss, blind to pixels that may not serve as targets.

    Pixels with ``target_valid == 0`` (e.g. a user's dead pixels) are kept out of every
    term: there both the output and the target are replaced by the detached output. Their
    difference is then zero, no gradient flows through them, and the excluded target
    values enter no term, not even through the windows of SSIM, total variation or feature
    networks that reach over them from neighbouring pixels (``torch.where``, so even NaN
    there is harmless).
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

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
        return self.inner(
            output, target, mask, d_fake_logits=d_fake_logits, d_real_logits=d_real_logits
        )


def build_stage_loss(stage: str, weights: RepairLossWeights | OptimizeLossWeights) -> StageLoss:
    """The loss module of ``stage`` (``"repair"``: eq. 1, ``"optimize"``: eq. 11)."""
    if stage == "repair":
        assert isinstance(weights, RepairLossWeights)
        return StageLoss(RepairLoss(weights))
    assert isinstance(weights, OptimizeLossWeights)
    return StageLoss(OptimizeLoss(weights))
