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
            mask: ``[N, 1, H, W]`` or ``[N, C, H, W]``; 1 = valid pixel, 0 = hole. Its batch
                size may also be 1: one mask for every image of the batch.

        Returns:
            ``(out, new_mask)``: ``out`` is ``[N, out_channels, H', W']``; ``new_mask`` is
            ``[N or 1, 1, H', W']`` with 1 wherever the window saw a valid pixel.
        """
        self._check(x, mask)
        if x.shape[1] != self.in_channels:
            raise InputError(f"expected {self.in_channels} input channels, got {x.shape[1]}")
        mask = mask.to(x.dtype)
        ratio, new_mask = self.ratio([(mask, int(mask.shape[1]))])
        return self.renormalize(self.convolve(x * mask), ratio, new_mask), new_mask

    def forward_parts(
        self, parts: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The partial convolution of inputs given in parts, each with its own mask.

        Equal, bit for bit, to ``forward(cat(x_i), cat(m_i expanded to C_i channels))``
        (the U-Net decoder's join of an upsampled feature and a skip), without building the
        ``C``-channel mask: the mask sum is ``Σ C_i · conv(m_i, 1)`` for one-channel masks,
        small integers that float32 holds exactly, so the ratio is the same number.

        Args:
            parts: ``(x_i, m_i)`` pairs: ``x_i`` ``[N, C_i, H, W]``; ``m_i`` ``[N or 1, 1 or
                C_i, H, W]``. The ``C_i`` add up to ``in_channels``.

        Returns:
            ``(out, new_mask)`` as :meth:`forward`.
        """
        if not parts:
            raise InputError("forward_parts needs at least one (x, mask) part")
        for x, mask in parts:
            self._check(x, mask)
        x0 = parts[0][0]
        if any(x.shape[0] != x0.shape[0] or x.shape[2:] != x0.shape[2:] for x, _ in parts):
            raise InputError(
                "the parts of a partial convolution must share batch size, height and width, "
                f"got {[tuple(x.shape) for x, _ in parts]}"
            )
        channels = sum(int(x.shape[1]) for x, _ in parts)
        if channels != self.in_channels:
            raise InputError(f"expected {self.in_channels} input channels, got {channels}")
        masks = [(mask.to(x.dtype), int(x.shape[1])) for x, mask in parts]
        masked = [x * mask for (x, _), (mask, _) in zip(parts, masks, strict=True)]
        ratio, new_mask = self.ratio(masks)
        inputs = masked[0] if len(masked) == 1 else torch.cat(masked, dim=1)
        return self.renormalize(self.convolve(inputs), ratio, new_mask), new_mask

    @staticmethod
    def _check(x: torch.Tensor, mask: torch.Tensor) -> None:
        if x.ndim != 4 or mask.ndim != 4:
            raise InputError(
                f"PartialConv2d expects x [N,C,H,W] and mask [N,1|C,H,W], got "
                f"{tuple(x.shape)} and {tuple(mask.shape)}"
            )
        n, c, h, w = x.shape
        if mask.shape[0] not in (1, n) or mask.shape[2:] != (h, w) or mask.shape[1] not in (1, c):
            raise InputError(
                f"mask shape {tuple(mask.shape)} does not fit input {tuple(x.shape)}: "
                f"expected [{n} or 1, 1 or {c}, {h}, {w}]"
            )

    def ratio(self, masks: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The renormalisation of inputs in parts with these masks: ``(ratio, new_mask)``.

        Args:
            masks: ``(m_i, C_i)`` per part: its mask ``[N|1, 1|C_i, H, W]`` (in the inputs'
                dtype) and its channel count ``C_i``.

        Returns:
            ``ratio`` ``window / sum(M)`` where the window saw a valid element, else 0, and
            ``new_mask`` (1 there), both ``[N|1, 1, H', W']``. They depend on the masks
            only, so a caller may compute them over a whole level and use a crop of them
            with :meth:`convolve` of a crop of the inputs (the inference graph's decoder).
        """
        msum = None
        for mask, channels in masks:
            part = self._mask_sum(mask)
            if mask.shape[1] == 1 and channels != 1:
                part = part * float(channels)
            msum = part if msum is None else msum + part
        assert msum is not None
        window = float(sum(c for _, c in masks) * self.kernel_size[0] * self.kernel_size[1])
        with torch.no_grad():
            new_mask = (msum > 0).to(msum.dtype)
            ratio = window / msum.clamp(min=1.0) * new_mask
        return ratio, new_mask

    def convolve(self, masked: torch.Tensor) -> torch.Tensor:
        """``W^T (X ⊙ M)`` without the renormalisation: the convolution of masked inputs."""
        return F.conv2d(masked, self.weight, None, self.stride, self.padding, self.dilation)

    def renormalize(
        self, out: torch.Tensor, ratio: torch.Tensor, new_mask: torch.Tensor
    ) -> torch.Tensor:
        """``out · ratio + b · new_mask``: :meth:`convolve`'s output, renormalised."""
        out = out * ratio
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1) * new_mask
        return out

    def _mask_sum(self, mask: torch.Tensor) -> torch.Tensor:
        """How many valid elements each output position's window holds ``[N|1,1,H',W']``."""
        with torch.no_grad():
            # int(): a constant in exported (traced) graphs, where sizes are otherwise traced
            ones = torch.ones(
                1, int(mask.shape[1]), *self.kernel_size, device=mask.device, dtype=mask.dtype
            )
            return F.conv2d(mask, ones, None, self.stride, self.padding, self.dilation)
