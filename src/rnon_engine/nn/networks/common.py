"""Small helpers shared by the networks."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def scaled(channels: int, width: float, minimum: int = 4) -> int:
    """Scale a channel count by a width multiplier, rounded, never below ``minimum``."""
    return max(minimum, int(round(channels * width)))


def kaiming_init(module: nn.Module, negative_slope: float = 0.0) -> None:
    """He-normal init for every conv and linear layer (the paper cites He et al.)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(m.weight, a=negative_slope, nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def pad_to_multiple(x: Tensor, multiple: int, mode: str = "constant") -> tuple[Tensor, int, int]:
    """Pad ``x`` ``[N,C,H,W]`` at the bottom and right to a multiple of ``multiple``.

    Returns:
        The padded tensor and the original ``H`` and ``W`` (to crop back with ``[..., :H, :W]``).
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        if mode == "reflect" and (ph >= h or pw >= w):
            mode = "replicate"  # reflect needs the pad to be smaller than the side
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, h, w
