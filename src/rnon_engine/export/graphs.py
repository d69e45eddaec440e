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

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnon_engine.nn.networks.optimize import OptimizeGenerator
from rnon_engine.nn.networks.repair import RepairGenerator

__all__ = [
    "BOX_LEVELS",
    "GRAPH_REVISION",
    "PUSHPULL_LEVELS",
    "SMALL_WINDOW_LEVELS",
    "OptimizeGraph",
    "PipelineGraph",
    "RepairGraph",
    "box_levels",
    "exact_side",
    "pushpull_fill_unrolled",
    "trunk_in_box",
    "unet_in_box",
]

#: Revision of the exported graphs' operations: raised when a change gives the same outputs
#: by other (cheaper) operations, so that exports cached by an earlier version are made
#: again (:class:`~rnon_engine.inference.ort_runner.OrtRunner`'s cache key). 2: the U-Net's
#: masks are one channel and, with the push-pull prefill, one for the whole batch. 3: the
#: small-window graph takes the holes' box and computes its finest decoder levels there.
#: 4: chained slices are one ``Slice`` (:func:`~rnon_engine.export.slices.merge_slices`).
GRAPH_REVISION = 4

#: Decoder levels (the finest, counted from full resolution) that a box graph computes in
#: the holes' box only. Exact when the padded input's sides are multiples of
#: ``2**BOX_LEVELS``: between these levels the nearest upsampling is an exact ×2.
BOX_LEVELS = 3

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

    def forward(
        self, image: Tensor, mask: Tensor, pad: Tensor | None = None, box: Tensor | None = None
    ) -> Tensor:
        """Repair ``image`` where ``mask`` is nonzero.

        With ``box`` (int64 ``[y0, y1, x0, x1]``, a box that holds every hole pixel of the
        batch) the output is that box of the repaired image, ``[N, 3, y1-y0, x1-x0]``,
        and the decoder's finest :data:`BOX_LEVELS` levels are computed there only
        (:func:`unet_in_box`; the padding multiple must then be at least
        ``2**BOX_LEVELS``).
        """
        valid = (mask == 0).to(image.dtype)
        p = self.pad_multiple if pad is None else pad.shape[0]
        if box is None:
            return valid * image + (1 - valid) * self.raw(image * valid, valid, p)
        raw = self.raw(image * valid, valid, p, box)
        ys, xs = slice(box[0], box[1]), slice(box[2], box[3])
        vbox = valid[..., ys, xs]
        return vbox * image[..., ys, xs] + (1 - vbox) * raw

    def raw(
        self,
        image: Tensor,
        valid: Tensor,
        p: int | Tensor | None = None,
        box: Tensor | None = None,
    ) -> Tensor:
        """``RepairGenerator.forward(image, valid, pad_to=p)`` without Python branches.

        With ``box``, that box of it (:func:`unet_in_box`).
        """
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
        if box is None:
            return net.unet(x, m, h, w, fill)
        return unet_in_box(net, x, m, fill, box)


def box_levels(start: Tensor, stop: Tensor, levels: int) -> list[tuple[Tensor, ...]]:
    """Rows (or columns) each box-level decoder block reads and writes, finest first.

    Level ``j``'s block must be right on ``[o0, o1)``; its 3×3 convolution reads
    ``[i0, i1) = [o0 - 1, o1 + 1)`` (cut at 0; ends past the level are cut by the slices),
    and nearest ×2 upsampling maps row ``r`` to ``r // 2`` of level ``j + 1``, which must
    then be right on ``[i0 // 2, (i1 - 1) // 2 + 1)``. Returns ``(o0, o1, i0, i1)`` per
    level and, last, ``(o0, o1)`` of level ``levels`` (computed whole).
    """
    out: list[tuple[Tensor, ...]] = []
    o0, o1 = start.clamp(min=0), stop
    for _ in range(levels):
        i0, i1 = (o0 - 1).clamp(min=0), o1 + 1
        out.append((o0, o1, i0, i1))
        o0 = torch.div(i0, 2, rounding_mode="floor")
        o1 = torch.div(i1 - 1, 2, rounding_mode="floor") + 1
    out.append((o0, o1))
    return out


def unet_in_box(
    net: RepairGenerator, x: Tensor, m: Tensor, fill: Tensor | None, box: Tensor,
    levels: int = BOX_LEVELS,
) -> Tensor:
    """``net.unet``'s output in ``box`` only, its finest ``levels`` decoder levels cropped.

    A window's holes fill a small part of it (a dust spot in a 64 px window with its
    context); the encoder needs the whole window, but the decoder's output is read on the
    holes only. The masks, ratios and coarser levels are computed whole, so every value in
    the box is the one :meth:`RepairGenerator.unet` computes (the same operations on the
    same inputs; ``tests/test_export_box.py``).

    Args:
        net: The repair generator.
        x: Padded input ``[N, C, H, W]``; ``H`` and ``W`` multiples of ``2**levels``.
        m: Its mask ``[N|1, 1, H, W]``.
        fill: The push-pull fill (unpadded), or None.
        box: int64 ``[y0, y1, x0, x1]`` within the unpadded input.
        levels: Decoder levels computed in the box (see :data:`BOX_LEVELS`).

    Returns:
        ``[N, 3, y1 - y0, x1 - x0]``.
    """
    feats: list[tuple[Tensor, Tensor]] = [(x, m)]
    for block in net.encoder:
        x, m = block(x, m)
        feats.append((x, m))
    feats.pop()
    rows = box_levels(box[0], box[1], levels)
    cols = box_levels(box[2], box[3], levels)
    depth = len(net.decoder)
    whole = True  # x is a whole level (the bottleneck, or a coarse level's output)
    for k, block in enumerate(net.decoder):
        level = depth - 1 - k  # of this block's output (0 = full resolution)
        skip_x, skip_m = feats.pop()
        size = skip_x.shape[-2:]
        if level >= levels:  # coarse: whole, as in unet
            x = F.interpolate(x, size=size, mode="nearest")
            m = F.interpolate(m, size=size, mode="nearest")
            x, m = block.forward_parts([(x, m), (skip_x, skip_m)])
            continue
        up_m = F.interpolate(m, size=size, mode="nearest")
        conv = block.conv
        ratio, m = conv.ratio([(up_m, int(x.shape[1])), (skip_m, int(skip_x.shape[1]))])
        oy0, oy1, iy0, iy1 = rows[level]
        ox0, ox1, ix0, ix1 = cols[level]
        if whole:  # the coarser level was computed whole: the part of it that is read
            (ry0, ry1), (rx0, rx1) = rows[level + 1][:2], cols[level + 1][:2]
            x = x[..., ry0:ry1, rx0:rx1]
            whole = False
        # x holds rows [uy0, uy1) of the coarser level: upsampled, rows [2 uy0, 2 uy1)
        uy0, ux0 = rows[level + 1][0], cols[level + 1][0]
        up = F.interpolate(x, scale_factor=2.0, mode="nearest")
        up = up[..., iy0 - 2 * uy0 : iy1 - 2 * uy0, ix0 - 2 * ux0 : ix1 - 2 * ux0]
        inside = (slice(None), slice(None), slice(iy0, iy1), slice(ix0, ix1))
        masked = torch.cat(
            [up * up_m[inside], skip_x[inside] * skip_m[inside]], dim=1
        )
        out = conv.convolve(masked)[..., oy0 - iy0 : oy1 - iy0, ox0 - ix0 : ox1 - ix0]
        kept = (slice(None), slice(None), slice(oy0, oy1), slice(ox0, ox1))
        x = block.act(block.bn(conv.renormalize(out, ratio[kept], m[kept])))
    x = net.head(x)
    if fill is None:
        return torch.sigmoid(x)
    fill = fill[..., box[0] : box[1], box[2] : box[3]]
    return torch.sigmoid(torch.logit(fill.clamp(1e-3, 1 - 1e-3)) + x)


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
        self,
        image: Tensor,
        guide: Tensor | None = None,
        valid: Tensor | None = None,
        box: Tensor | None = None,
    ) -> Tensor:
        """Refine ``image`` ``[N, 3, H, W]`` in [0, 1].

        With ``box`` (int64 ``[y0, y1, x0, x1]``), the refined image in that box only,
        each layer computed where the box's pixels need it (:func:`trunk_in_box`).
        """
        net = self.net
        x = net.inputs(image, guide, valid)
        if box is None:
            return net.output(image, trunk_split(net, x), guide)
        ys, xs = slice(box[0], box[1]), slice(box[2], box[3])
        inside = None if guide is None else guide[..., ys, xs]
        return net.output(image[..., ys, xs], trunk_in_box(net, x, box), inside)


Span = tuple[Tensor, Tensor]


def _grow(span: Span, by: int, size: Tensor) -> Span:
    """``[a - by, b + by)``, cut to ``[0, size)``."""
    return (span[0] - by).clamp(min=0), torch.minimum(span[1] + by, size)


def _reach(conv: nn.Conv2d) -> tuple[int, int]:
    """How far (rows, columns) a stride-1 'same' convolution's output pixel sees."""
    return (
        conv.dilation[0] * (conv.kernel_size[0] // 2),
        conv.dilation[1] * (conv.kernel_size[1] // 2),
    )


class _Padded:
    """A tensor that holds rows and columns ``have`` of a level, padded with zeros.

    The padding (``by`` px on every side) stands for the zeros a 'same' convolution reads
    beyond the image's edges; it is read only there, since ``have`` holds every pixel
    within reach of what is computed from it, cut at the image's edges.
    """

    def __init__(self, x: Tensor, have: tuple[Span, Span], by: tuple[int, int]) -> None:
        self.by = by
        self.have = have
        self.x = F.pad(x, (by[1], by[1], by[0], by[0])) if max(by) > 0 else x

    def conv(self, conv: nn.Conv2d, want: tuple[Span, Span]) -> Tensor:
        """``conv``'s output on ``want`` only (no padding of its own: ``valid``)."""
        (hy, _), (hx, _) = self.have
        (wy0, wy1), (wx0, wx1) = want
        ry, rx = _reach(conv)
        py, px = self.by
        # Row r of the level is row r - hy + py of self.x; the convolution reads from
        # wy0 - ry to wy1 + ry.
        rows = slice(wy0 - ry - hy + py, wy1 + ry - hy + py)
        sub = self.x[..., rows, wx0 - rx - hx + px : wx1 + rx - hx + px]
        return F.conv2d(sub, conv.weight, conv.bias, 1, 0, conv.dilation)


def _block_split(block: nn.Module, y: Tensor, branch: Callable[[nn.Conv2d], Tensor]) -> Tensor:
    """A residual block's output ``y + fuse(act(cat(branches)))``, for a 1×1 fuse.

    The fuse of the concatenated branches is the sum of one 1×1 convolution per branch:
    no concatenation, and ONNX Runtime folds each sum and ReLU into a convolution (the
    same numbers up to float rounding). ``branch(conv)`` computes a branch's output.
    """
    weight, bias = block.fuse.weight, block.fuse.bias
    width = weight.shape[1] // len(block.branches)
    for i, conv in enumerate(block.branches):
        z = block.act(branch(conv))
        y = y + F.conv2d(z, weight[:, i * width : (i + 1) * width], bias if i == 0 else None)
    return y


def trunk_split(net: OptimizeGenerator, x: Tensor) -> Tensor:
    """``net.trunk(x)`` with each 1×1 fuse split by branch (:func:`_block_split`)."""
    y = net.head(x)
    for block in net.blocks:
        if _reach(block.fuse) == (0, 0):
            y = _block_split(block, y, lambda conv, y=y: conv(y))
        else:
            y = block(y)
    return net.tail(y)


def trunk_in_box(net: OptimizeGenerator, x: Tensor, box: Tensor) -> Tensor:
    """``net.trunk(x)`` in ``box`` only, each layer computed where the box needs it.

    Stage 2 refines the hole pixels of a band as wide as its receptive radius around
    them; its last layers need only a pixel or two around the holes. The values in the
    box are ``net.trunk(x)``'s (``tests/test_export_box.py``).

    Args:
        net: The stage-2 generator (stride-1 'same' convolutions).
        x: The head's input ``[N, C, H, W]`` (:meth:`OptimizeGenerator.inputs`).
        box: int64 ``[y0, y1, x0, x1]``.

    Returns:
        ``[N, C_out, y1 - y0, x1 - x0]``.
    """
    head_conv, head_act = net.head[0], net.head[1]
    h, w = _side(x, -2).to(box.dtype), _side(x, -1).to(box.dtype)

    def grow(span: tuple[Span, Span], by: tuple[int, int]) -> tuple[Span, Span]:
        return _grow(span[0], by[0], h), _grow(span[1], by[1], w)

    out = grow(((box[0], box[1]), (box[2], box[3])), (0, 0))
    trunk_span = grow(out, _reach(net.tail))
    spans = []  # per block: (input span, branches' span, output span)
    span = trunk_span
    for block in reversed(net.blocks):
        mid = grow(span, _reach(block.fuse))
        reach = tuple(max(_reach(b)[i] for b in block.branches) for i in (0, 1))
        spans.append((grow(mid, reach), mid, span))
        span = spans[-1][0]
    spans.reverse()
    zero = box[0] * 0
    y = head_act(_Padded(x, ((zero, zero), (zero, zero)), _reach(head_conv)).conv(head_conv, span))
    for block, (have, mid, want) in zip(net.blocks, spans, strict=True):
        padded = _Padded(y, have, tuple(max(_reach(b)[i] for b in block.branches) for i in (0, 1)))
        dy, dx = want[0][0] - have[0][0], want[1][0] - have[1][0]
        rows, cols = want[0][1] - want[0][0], want[1][1] - want[1][0]
        y = y[..., dy : dy + rows, dx : dx + cols]  # the block's input: the residual
        if _reach(block.fuse) == (0, 0):
            y = _block_split(block, y, lambda conv, p=padded, m=mid: p.conv(conv, m))
        else:
            z = block.act(torch.cat([padded.conv(b, mid) for b in block.branches], dim=1))
            y = y + _Padded(z, mid, _reach(block.fuse)).conv(block.fuse, want)
    return _Padded(y, trunk_span, _reach(net.tail)).conv(net.tail, out)


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
