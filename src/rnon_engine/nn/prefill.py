"""Push-pull (pyramid) hole filling: a fast, smooth classical fill in torch.

Used as the starting point of the repair generator when ``RepairConfig.prefill`` is
``"pushpull"``: the network then learns a correction on top of a plausible fill instead of
painting holes from nothing, which trains far faster on a CPU. On 12 random 256² crops of
scikit-image photographs with stroke masks it scored 28.03 dB PSNR in the hole region's
image, against 27.54 (OpenCV Telea) and 27.84 (scikit-image biharmonic); see
docs/paper_notes.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["pushpull_fill"]

_BINOMIAL = torch.tensor([1.0, 3.0, 3.0, 1.0])


def _down(x: Tensor) -> Tensor:
    """Halve with a 4×4 binomial kernel (stride 2, replicate padding), channel by channel."""
    c = x.shape[1]
    k = (_BINOMIAL[:, None] * _BINOMIAL[None, :]).to(x)
    k = (k / k.sum()).expand(c, 1, 4, 4)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, stride=2, groups=c)


def pushpull_fill(image: Tensor, valid: Tensor) -> Tensor:
    """Fill holes by averaging valid pixels over a pyramid and interpolating back down.

    Push: repeatedly halve the image with a valid-weighted binomial mean; a coarse pixel's
    confidence is its covered fraction (×4, capped at 1). Pull: from the coarsest level
    down, every pixel blends its own value and the bilinearly upsampled coarser level by
    its confidence. Known pixels (``valid == 1``) are returned unchanged.

    Args:
        image: ``[N, C, H, W]``.
        valid: ``[N, 1, H, W]`` in [0, 1]; 1 = known pixel, 0 = hole.

    Returns:
        ``[N, C, H, W]``: ``valid·image + (1 − valid)·fill``. A sample without any valid
        pixel is filled with its (undefined) mean, 0.
    """
    valid = valid.to(image.dtype)
    if bool((valid >= 1).all()):
        return image
    h, w = image.shape[-2:]
    if min(h, w) <= 2:
        total = valid.sum(dim=(-2, -1), keepdim=True)
        mean = (image * valid).sum(dim=(-2, -1), keepdim=True) / total.clamp(min=1e-8)
        return valid * image + (1 - valid) * mean
    ph, pw = h % 2, w % 2
    wsum = _down(F.pad(valid, (0, pw, 0, ph), mode="replicate"))
    xsum = _down(F.pad(image * valid, (0, pw, 0, ph), mode="replicate"))
    coarse = pushpull_fill(xsum / wsum.clamp(min=1e-8), (wsum * 4).clamp(max=1.0))
    up = F.interpolate(coarse, size=(h + ph, w + pw), mode="bilinear", align_corners=False)
    return valid * image + (1 - valid) * up[..., :h, :w]
