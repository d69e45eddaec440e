"""Partial convolution (Liu et al. 2018), the building block of the repair network."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rnon_engine.errors import InputError

__all__ = ["PartialConv2d"]


class PartialConv2d(nn.Conv2d):
    """2-D partial convolution.

    For every output position with at least one valid input pixel in its window::

        x' = W^T (X ⊙ M) · sum(1) / sum(M) + b,   m' = 1

    and ``x' = 0``, ``m' = 0`` where the window holds no valid pixel. ``sum(1)`` counts the
    window's elements (``C_mask · kh · kw``) and ``sum(M)`` the valid ones. Outside the input
    the mask is taken as 0 (zero padding is "hole"), so the layer never invents context at
    the border. The output does not depend on the values of hole pixels.

    Args mirror :class:`torch.nn.Conv2d`; only ``padding_mode="zeros"`` and ``groups=1``
    are supported.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=1,
            bias=bias,
        )

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply the partial convolution.

        Args:
            x: Input ``[N, C, H, W]``.
            mask: ``[N, 1, H, W]`` or ``[N, C, H, W]``; 1 = valid pixel, 0 = hole.

        Returns:
            ``(out, new_mask)``: ``out`` is ``[N, out_channels, H', W']``; ``new_mask`` is
            ``[N, 1, H', W']`` with 1 wherever the window saw a valid pixel.
        """
        if x.ndim != 4 or mask.ndim != 4:
            raise InputError(
                f"PartialConv2d expects x [N,C,H,W] and mask [N,1|C,H,W], got "
                f"{tuple(x.shape)} and {tuple(mask.shape)}"
            )
        n, c, h, w = x.shape
        if mask.shape[0] != n or mask.shape[2:] != (h, w) or mask.shape[1] not in (1, c):
            raise InputError(
                f"mask shape {tuple(mask.shape)} does not fit input {tuple(x.shape)}: "
                f"expected [{n}, 1 or {c}, {h}, {w}]"
            )
        if c != self.in_channels:
            raise InputError(f"expected {self.in_channels} input channels, got {c}")
        mask = mask.to(x.dtype)
        with torch.no_grad():
            # int(): a constant in exported (traced) graphs, where sizes are otherwise traced
            ones = torch.ones(
                1, int(mask.shape[1]), *self.kernel_size, device=x.device, dtype=x.dtype
            )
            msum = F.conv2d(
                mask, ones, None, self.stride, self.padding, self.dilation
            )  # [N,1,H',W']
            new_mask = (msum > 0).to(x.dtype)
            window = float(mask.shape[1] * self.kernel_size[0] * self.kernel_size[1])
            ratio = window / msum.clamp(min=1.0) * new_mask
        out = F.conv2d(x * mask, self.weight, None, self.stride, self.padding, self.dilation)
        out = out * ratio
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1) * new_mask
        return out, new_mask
