"""Channel pruning of a trained repair generator: a thinner stage 1 that starts from it.

A thinner network trained from scratch stays below the one it should replace (the
``s1-thin`` run: 0.26-0.43 dB at half the width); one that starts from the trained network's
most useful channels and is then distilled from it (``repair.teacher``) starts where the
trained one is. :func:`prune_repair` keeps, in every layer, the channels whose output
carries the most signal into the layers that read it, and slices every weight accordingly.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from rnon_engine.nn.networks.repair import RepairConfig, RepairGenerator
from rnon_engine.nn.registry import create_model

__all__ = ["channel_scores", "prune_repair"]


def _output_scale(block: nn.Module) -> Tensor:
    """How large each output channel of a U-Net block is: BN's ``|γ|``, else the filter's L1."""
    bn = block.bn
    if isinstance(bn, nn.BatchNorm2d):
        return bn.weight.detach().abs()
    return block.conv.weight.detach().abs().sum(dim=(1, 2, 3))


Key = tuple[str, int]


def _joins(model: RepairGenerator) -> list[tuple[Key, int, Key | None]]:
    """What each decoder block ``j`` reads: ``(previous, its channels, skip)``.

    The block joins the output of the block before it (the bottleneck for ``j = 0``) at
    input offset 0 with the skip of encoder level ``depth - 2 - j`` after it; the last
    block's skip is the network's input (``None``).
    """
    depth = model.config.depth
    joins = []
    previous: Key = ("encoder", depth - 1)
    for j in range(depth):
        level = depth - 2 - j
        prev_block = model.encoder[depth - 1] if j == 0 else model.decoder[j - 1]
        skip: Key | None = ("encoder", level) if level >= 0 else None
        joins.append((previous, prev_block.conv.out_channels, skip))
        previous = ("decoder", j)
    return joins


def _readers(model: RepairGenerator) -> dict[Key, list[tuple[nn.Module, int]]]:
    """For each block's output, the convolutions that read it and the input offset there."""
    readers: dict[Key, list[tuple[nn.Module, int]]] = {}
    for i in range(model.config.depth - 1):
        readers[("encoder", i)] = [(model.encoder[i + 1].conv, 0)]
    for block, (previous, width_prev, skip) in zip(model.decoder, _joins(model), strict=True):
        readers.setdefault(previous, []).append((block.conv, 0))
        if skip is not None:
            readers[skip].append((block.conv, width_prev))
    return readers


def channel_scores(model: RepairGenerator) -> dict[Key, Tensor]:
    """Each hidden channel's importance: its output scale times the weights that read it.

    Returns:
        ``{("encoder", i) | ("decoder", j): [C]}`` for every block but the last decoder
        block (the image's channels, or ``head_channels``, which the head reads: always kept).
    """
    scores = {}
    blocks = {("encoder", i): b for i, b in enumerate(model.encoder)}
    blocks.update({("decoder", j): b for j, b in enumerate(model.decoder)})
    for key, consumers in _readers(model).items():
        block = blocks[key]
        channels = block.conv.out_channels
        read = torch.zeros(channels)
        for conv, offset in consumers:
            w = conv.weight.detach().abs()[:, offset : offset + channels]
            read += w.sum(dim=(0, 2, 3))
        scores[key] = _output_scale(block) * read
    return scores


def _keep(scores: Tensor, n: int) -> Tensor:
    """Indices of the ``n`` highest scores, in their original order."""
    return torch.sort(torch.topk(scores, n).indices).values


def _copy_block(src: nn.Module, dst: nn.Module, rows: Tensor, cols: Tensor) -> None:
    """Copy a U-Net block's output channels ``rows`` and input channels ``cols`` into ``dst``."""
    dst.conv.weight.copy_(src.conv.weight[rows][:, cols])
    if src.conv.bias is not None:
        dst.conv.bias.copy_(src.conv.bias[rows])
    if isinstance(src.bn, nn.BatchNorm2d):
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(dst.bn, name).copy_(getattr(src.bn, name)[rows])
        dst.bn.num_batches_tracked.copy_(src.bn.num_batches_tracked)


def prune_repair(model: RepairGenerator, width: float) -> RepairGenerator:
    """A repair generator of a smaller ``width`` made of ``model``'s most useful channels.

    Every layer keeps the channels :func:`channel_scores` ranks highest (as many as
    ``width`` gives); convolution, bias and batch-norm tensors are sliced to them. When
    the dropped channels are silent (zero output) and every decoder join's two parts have
    the same mask (push-pull prefill, sides a multiple of ``2**depth``), the pruned network
    computes what ``model`` does; elsewhere the partial convolutions' ratios at mask edges
    weigh the joined parts by their channel counts, which pruning changes slightly.

    Args:
        model: A trained :class:`RepairGenerator`.
        width: The new channel multiplier, at most ``model.config.width``.

    Returns:
        A new :class:`RepairGenerator` made by :func:`rnon_engine.create_model` (so
        :func:`rnon_engine.save_weights` can write it), in ``model``'s mode, on the CPU.

    Raises:
        ValueError: ``width`` is larger than the model's.
    """
    config: RepairConfig = model.config
    if width > config.width:
        raise ValueError(
            f"pruning keeps at most the model's own width ({config.width}), got {width}"
        )
    new_config = dataclasses.replace(config, width=width)
    pruned = create_model(
        getattr(model, "model_name", "rnon-repair"), **dataclasses.asdict(new_config)
    )
    scores = channel_scores(model)
    kept: dict[Key, Tensor] = {}
    for i, n in enumerate(new_config.encoder_channels):
        kept[("encoder", i)] = _keep(scores[("encoder", i)], n)
    for j, block in enumerate(pruned.decoder):
        key = ("decoder", j)
        n = block.conv.out_channels
        kept[key] = _keep(scores[key], n) if key in scores else torch.arange(n)

    c_in = model.encoder[0].conv.in_channels

    with torch.no_grad():
        cols = torch.arange(c_in)
        for i in range(config.depth):
            rows = kept[("encoder", i)]
            _copy_block(model.encoder[i], pruned.encoder[i], rows, cols)
            cols = rows
        for j, (previous, width_prev, skip) in enumerate(_joins(model)):
            skip_cols = kept[skip] if skip is not None else torch.arange(c_in)
            cols = torch.cat([kept[previous], width_prev + skip_cols])
            _copy_block(model.decoder[j], pruned.decoder[j], kept[("decoder", j)], cols)
        pruned.head.load_state_dict(model.head.state_dict())
    pruned.train(model.training)
    return pruned
