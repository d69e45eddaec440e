"""Export-friendly wrappers of the generators: one traced graph for any height and width.

The networks' own ``forward`` methods branch in Python on sizes and values (the push-pull
prefill recurses until the image is 2 px small and stops early once every pixel is
known; padding happens only when a side is not a multiple). A graph exported for dynamic
``H, W`` cannot hold such branches, so these wrappers compute the same thing without them,
reusing the generators' own layers:

- :func:`pushpull_fill_unrolled` runs a fixed number of pyramid levels and selects, level
  by level, between the recursion and the small-image mean with a tensor condition on the
  level's size. The early return for an all-known level is dropped: it returns the level's
  image, which is what the blend ``valid·image + (1−valid)·up`` gives there too.
- Padding to the multiple is always applied (by zero rows when the side already fits).

The tests check these graphs against the generators' ``forward`` on many sizes.

Inputs and outputs follow the users' convention (``mask`` nonzero = pixel to repair), and
the outputs are composited: pixels outside the mask are the input's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnon_engine.nn.networks.optimize import OptimizeGenerator
from rnon_engine.nn.networks.repair import RepairGenerator

__all__ = [
    "GRAPH_REVISION",
    "PUSHPULL_LEVELS",
    "SMALL_WINDOW_LEVELS",
    "OptimizeGraph",
    "PipelineGraph",
    "RepairGraph",
    "exact_side",
    "pushpull_fill_unrolled",
]

#: Revision of the exported graphs' operations: raised when a change gives the same outputs
#: by other (cheaper) operations, so that exports cached by an earlier version are made
#: again (:class:`~rnon_engine.inference.ort_runner.OrtRunner`'s cache key). 2: the U-Net's
#: masks are one channel and, with the push-pull prefill, one for the whole batch.
GRAPH_REVISION = 2

#: Pyramid levels of the exported push-pull fill: exact for images whose shorter side is
#: at most ``2**(PUSHPULL_LEVELS + 1)`` px (the recursion has reached 2 px by then).
PUSHPULL_LEVELS = 20

#: Levels of the stage-1 graph for the inpainter's windows (shorter side up to 512 px, the
#: default tile): the same outputs, without the twelve levels that such windows only pass
#: through at 1 px (each a few dozen graph operations).
SMALL_WINDOW_LEVELS = 8


def exact_side(levels: int) -> int:
    """The longest shorter side a push-pull fill of ``levels`` levels computes exactly."""
    return 2 ** (levels + 1)

_BINOMIAL = (1.0, 3.0, 3.0, 1.0)


def _down(x: Tensor) -> Tensor:
    """Halve with a 4×4 binomial kernel (stride 2, replicate padding), channel by channel."""
    c = int(x.shape[1])  # a constant of the graph (channels are fixed), not a traced size
    b = torch.tensor(_BINOMIAL, dtype=x.dtype, device=x.device)
    k = b[:, None] * b[None, :]
    k = (k / k.sum()).expand(c, 1, 4, 4)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, stride=2, groups=c)


def _side(x: Tensor, dim: int) -> Tensor:
    """The size of ``x`` along ``dim`` as a 0-d float tensor (a graph value, not a constant)."""
    return torch.ones_like(x[:1, :1]).sum(dim=dim).amax()


def pushpull_fill_unrolled(image: Tensor, valid: Tensor, levels: int = PUSHPULL_LEVELS) -> Tensor:
    """:func:`rnon_engine.nn.prefill.pushpull_fill` without Python branches.

    Args:
        image: ``[N, C, H, W]``.
        valid: ``[N, 1, H, W]`` in [0, 1]; 1 = known pixel.
        levels: Pyramid levels computed (see :data:`PUSHPULL_LEVELS`).

    Returns:
        ``[N, C, H, W]``, as ``pushpull_fill`` returns it.
    """
    valid = valid.to(image.dtype)
    total = valid.sum(dim=(-2, -1), keepdim=True)
    mean = (image * valid).sum(dim=(-2, -1), keepdim=True) / total.clamp(min=1e-8)
    small = valid * image + (1 - valid) * mean
    if levels <= 0:
        return small
    h, w = image.shape[-2:]
    ph, pw = h % 2, w % 2
    wsum = _down(F.pad(valid, (0, pw, 0, ph), mode="replicate"))
    xsum = _down(F.pad(image * valid, (0, pw, 0, ph), mode="replicate"))
    coarse = pushpull_fill_unrolled(
        xsum / wsum.clamp(min=1e-8), (wsum * 4).clamp(max=1.0), levels - 1
    )
    up = F.interpolate(coarse, size=(h + ph, w + pw), mode="bilinear", align_corners=False)
    pulled = valid * image + (1 - valid) * up[..., :h, :w]
    is_small = torch.minimum(_side(image, -2), _side(image, -1)) <= 2
    return torch.where(is_small, small, pulled)


class RepairGraph(nn.Module):
    """Stage 1 for export: ``(image, mask[, pad]) -> repaired image``.

    ``image`` ``[N, 3, H, W]`` float in [0, 1]; ``mask`` ``[N, 1, H, W]``, nonzero = repair.
    The input is padded (as a hole) at the bottom and right to a multiple of ``P`` and the
    result cropped back and composited. ``P`` is the length of the optional 1-D input
    ``pad`` (its values are not read), so one graph serves both multiples the inpainter
    uses: the U-Net's ``2**depth`` (as in training) and
    :data:`~rnon_engine.inference.provenance.NET_WINDOW_MULTIPLE` for small windows.
    Without ``pad``, ``P = pad_multiple``.
    """

    def __init__(
        self,
        net: RepairGenerator,
        pad_multiple: int | None = None,
        levels: int = PUSHPULL_LEVELS,
    ) -> None:
        """Wrap ``net``.

        Args:
            net: The repair generator (``pad_mode="hole"``).
            pad_multiple: ``P`` without a ``pad`` input (default: ``net.multiple``).
            levels: Push-pull levels (:func:`pushpull_fill_unrolled`); the graph is exact
                for inputs whose shorter side is at most :func:`exact_side` ``(levels)``.
        """
        super().__init__()
        if net.config.pad_mode != "hole":
            raise ValueError(
                f"only pad_mode='hole' repair models can be exported, this one uses "
                f"{net.config.pad_mode!r}"
            )
        self.net = net
        self.pad_multiple = int(pad_multiple or net.multiple)
        self.levels = int(levels)

    def forward(self, image: Tensor, mask: Tensor, pad: Tensor | None = None) -> Tensor:
        """Repair ``image`` where ``mask`` is nonzero."""
        valid = (mask == 0).to(image.dtype)
        p = self.pad_multiple if pad is None else pad.shape[0]
        return valid * image + (1 - valid) * self.raw(image * valid, valid, p)

    def raw(self, image: Tensor, valid: Tensor, p: int | Tensor | None = None) -> Tensor:
        """``RepairGenerator.forward(image, valid, pad_to=p)`` without Python branches."""
        net, cfg = self.net, self.net.config
        x, m = image, valid
        fill = None
        if cfg.prefill == "pushpull":
            fill = pushpull_fill_unrolled(image * valid, valid, self.levels)
            x = torch.cat([fill, 1.0 - valid], dim=1)
            m = torch.ones_like(valid[:1])  # one mask for the batch, as in forward
        h, w = x.shape[-2:]
        p = self.pad_multiple if p is None else p
        ph, pw = (p - h % p) % p, (p - w % p) % p
        x = F.pad(x, (0, pw, 0, ph))
        m = F.pad(m, (0, pw, 0, ph))
        return net.unet(x, m, h, w, fill)


class OptimizeGraph(nn.Module):
    """Stage 2 for export: ``image -> refined image`` (not composited: any ``H, W``).

    A guided stage 2 takes ``(image, guide, valid)``: the classical fill is computed
    outside the graph (a sparse solve), by whoever runs it.
    """

    def __init__(self, net: OptimizeGenerator) -> None:
        super().__init__()
        self.net = net

    @property
    def guided(self) -> bool:
        """Whether the graph takes a guide fill and the mask too."""
        return bool(self.net.config.guided)

    def forward(
        self, image: Tensor, guide: Tensor | None = None, valid: Tensor | None = None
    ) -> Tensor:
        """Refine ``image`` ``[N, 3, H, W]`` in [0, 1]."""
        net = self.net
        return net.output(image, net.trunk(net.inputs(image, guide, valid)), guide)


class PipelineGraph(nn.Module):
    """Both stages, composited after each: ``(image, mask) -> repaired image``.

    What the bioimage.io package holds. Stage 2 runs over the whole input and is
    composited, like the inpainter's band mode when the band covers the input. A guided
    stage 2 is left out: its classical guide fill is not an ONNX operation.
    """

    def __init__(self, repair: RepairGraph, optimize: OptimizeGraph | None) -> None:
        super().__init__()
        self.repair = repair
        self.optimize = optimize

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        """Repair ``image`` where ``mask`` is nonzero."""
        out = self.repair(image, mask)
        if self.optimize is not None and not self.optimize.guided:
            valid = (mask == 0).to(image.dtype)
            out = valid * out + (1 - valid) * self.optimize(out)
        return out
