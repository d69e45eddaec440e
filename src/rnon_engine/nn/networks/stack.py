"""The stack repair network (issue 17): a plane repaired from its aligned neighbours.

Input (built torch-free by :func:`rnon_engine.inference.stack_inputs.stack_inputs`, one
channel of a plane at a time, values in [0, 1]), ``[N, C, H, W]`` with ``S = slots``:

=====================  =======================================================
channels               content
=====================  =======================================================
``0``                  the damaged plane, holes zeroed
``1 … 2S``             the aligned, intensity-matched neighbours (offsets ``-S…-1,
                       +1…+S``), 0 where unknown
``2S+1``               the damaged plane's mask of known pixels
``2S+2 … 4S+1``        each aligned neighbour's validity mask
``4S+2``               a 2-D fill of the plane (Telea)
``4S+3``               the base fill: the aligned, intensity-matched neighbours averaged
                       (weights ``1/|offset|``) where one knows the pixel, else the 2-D
                       fill (known pixels: the plane)
``4S+4``               where the base fill comes from a neighbour
=====================  =======================================================

The raw planes and their masks enter a partial convolution (their holes never leak in);
the fills and masks a plain one. A small U-Net (two downsamplings, dilated convolutions in
the bottleneck) predicts a residual over the base fill; its last layer starts at zero, so
an untrained network returns the base fill. Callers composite: only hole pixels change.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnon_engine.errors import InputError
from rnon_engine.nn.networks.common import kaiming_init, pad_to_multiple
from rnon_engine.nn.partial_conv import PartialConv2d
from rnon_engine.nn.registry import register_model

__all__ = ["StackConfig", "StackRepairNet", "stack_channels"]


def stack_channels(slots: int) -> int:
    """Number of input channels of a stack network with ``slots`` planes each side."""
    return 4 * slots + 5


@dataclass(frozen=True)
class StackConfig:
    """Hyper-parameters of the stack repair network.

    Attributes:
        slots: Aligned neighbour planes on each side that the network reads (``K`` of the
            training stacks). Nearer planes fill the slots first; missing ones are invalid.
        width: Channels at full resolution (then ×1.5 and ×2 after each downsampling).
    """

    slots: int = 2
    width: int = 32

    def __post_init__(self) -> None:
        if not 1 <= self.slots <= 8:
            raise ValueError(f"slots must be in [1, 8], got {self.slots}")
        if not 4 <= self.width <= 256:
            raise ValueError(f"width must be in [4, 256], got {self.width}")


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation),
        nn.LeakyReLU(0.2, inplace=True),
    )


class StackRepairNet(nn.Module):
    """Residual over the base fill of a plane, from the plane and its aligned neighbours.

    Args:
        config: A :class:`StackConfig`.
    """

    def __init__(self, config: StackConfig) -> None:
        super().__init__()
        self.config = config
        s, w = config.slots, config.width
        w2, w3 = w * 3 // 2, w * 2
        self.raw = PartialConv2d(2 * s + 1, w // 2, 3, padding=1)
        self.aux = nn.Conv2d(2 * s + 4, w // 2, 3, padding=1)
        self.enc1 = _conv(w, w)
        self.down1 = _conv(w, w2, stride=2)
        self.enc2 = _conv(w2, w2)
        self.down2 = _conv(w2, w3, stride=2)
        self.mid = nn.Sequential(_conv(w3, w3, dilation=2), _conv(w3, w3, dilation=4))
        self.dec2 = _conv(w3 + w2, w2)
        self.dec1 = _conv(w2 + w, w)
        self.head = nn.Conv2d(w, 1, 3, padding=1)
        kaiming_init(self, 0.2)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Predict the repaired plane.

        Args:
            x: ``[N, 4*slots+5, H, W]`` inputs (see the module docstring).

        Returns:
            ``[N, 1, H, W]``: the base fill plus the predicted residual (everywhere; the
            caller keeps the known pixels).
        """
        s = self.config.slots
        if x.ndim != 4 or x.shape[1] != stack_channels(s):
            raise InputError(
                f"StackRepairNet expects [N, {stack_channels(s)}, H, W] inputs, got "
                f"{tuple(x.shape)}"
            )
        base = x[:, 4 * s + 3 : 4 * s + 4]
        x, h, w = pad_to_multiple(x, 4, mode="replicate")
        raw, mask = x[:, : 2 * s + 1], x[:, 2 * s + 1 : 4 * s + 2]
        r, _ = self.raw(raw, mask)
        a = self.aux(x[:, 2 * s + 1 :])
        f1 = self.enc1(F.leaky_relu(torch.cat([r, a], 1), 0.2))
        f2 = self.enc2(self.down1(f1))
        f3 = self.mid(self.down2(f2))
        u2 = F.interpolate(f3, size=f2.shape[-2:], mode="bilinear", align_corners=False)
        u2 = self.dec2(torch.cat([u2, f2], 1))
        u1 = F.interpolate(u2, size=f1.shape[-2:], mode="bilinear", align_corners=False)
        u1 = self.dec1(torch.cat([u1, f1], 1))
        return base + self.head(u1)[..., :h, :w]


register_model(
    "rnon-repair-stack",
    StackConfig,
    StackRepairNet,
    description="stack repair: a plane from its aligned neighbour planes (residual U-Net)",
)
