"""Each stage's weighted loss, as the trainer builds it.

The losses themselves keep excluded target pixels out of every term (the ``target_valid``
argument of :meth:`rnon_engine.train.losses.StageLoss.forward`); :class:`StageLoss` is
re-exported here for the trainer's imports.
"""

from __future__ import annotations

from rnon_engine.train.losses import (
    OptimizeLoss,
    OptimizeLossWeights,
    RepairLoss,
    RepairLossWeights,
    StageLoss,
)

__all__ = ["StageLoss", "build_stage_loss"]


def build_stage_loss(stage: str, weights: RepairLossWeights | OptimizeLossWeights) -> StageLoss:
    """The loss module of ``stage`` (``"repair"``: eq. 1, ``"optimize"``: eq. 11)."""
    if stage == "repair":
        assert isinstance(weights, RepairLossWeights)
        return RepairLoss(weights)
    assert isinstance(weights, OptimizeLossWeights)
    return OptimizeLoss(weights)
