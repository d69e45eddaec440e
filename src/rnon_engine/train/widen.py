"""Widening a trained repair generator's last decoder layer without changing its output.

The last decoder layer of the paper's U-Net outputs the image's three channels at full
resolution, and a 1×1 head maps them to the image. On a CPU that 3×3 convolution costs
about what one with a vector register's width of outputs costs (ONNX Runtime's blocked
kernels pad the three outputs to a block of 8 or 16), so a layer of 16 outputs is capacity
that the hardware computes anyway (``RepairConfig.head_channels``).
:func:`widen_head` makes such a network from a trained one that computes the same function:
the first outputs are the trained layer's, the new ones start as freshly initialised
filters that the head does not read yet (zero head weights). Training then decides what
they carry.
"""

from __future__ import annotations

import dataclasses

import torch

from rnon_engine.nn.networks.repair import RepairConfig, RepairGenerator
from rnon_engine.nn.registry import create_model

__all__ = ["widen_head"]


def widen_head(model: RepairGenerator, channels: int, seed: int = 0) -> RepairGenerator:
    """``model`` with ``channels`` outputs in its last decoder layer, the same function.

    Every other tensor is copied. In the last decoder layer the trained filters and biases
    become the first outputs and the others keep :class:`RepairGenerator`'s initialisation
    (seeded by ``seed``); the head reads the trained outputs with the trained weights and
    the new ones with zeros. The partial convolution's renormalisation depends on the
    layer's inputs, not on its outputs, so the widened network's output is ``model``'s up to
    float rounding (``tests/test_widen.py``).

    Args:
        model: A trained :class:`RepairGenerator`.
        channels: The new ``head_channels``, at least the layer's present outputs.
        seed: Seed of the new filters' initialisation.

    Returns:
        A new :class:`RepairGenerator` made by :func:`rnon_engine.create_model` (so
        :func:`rnon_engine.save_weights` can write it), in ``model``'s mode, on the CPU.

    Raises:
        ValueError: ``channels`` is fewer than the layer's present outputs.
    """
    config: RepairConfig = model.config
    old = config.last_channels
    if channels < old:
        raise ValueError(
            f"widening keeps the last decoder layer's {old} outputs: channels must be at "
            f"least {old}, got {channels}"
        )
    new_config = dataclasses.replace(config, head_channels=channels)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        wide = create_model(
            getattr(model, "model_name", "rnon-repair"), **dataclasses.asdict(new_config)
        )
    last = len(model.decoder) - 1
    resized = {f"decoder.{last}.conv.weight", f"decoder.{last}.conv.bias", "head.weight"}
    state = model.state_dict()
    with torch.no_grad():
        wide.load_state_dict({k: v for k, v in state.items() if k not in resized}, strict=False)
        conv, src = wide.decoder[last].conv, model.decoder[last].conv
        conv.weight[:old] = src.weight
        if src.bias is not None:
            conv.bias[:old] = src.bias
        wide.head.weight.zero_()
        wide.head.weight[:, :old] = model.head.weight
    wide.train(model.training)
    return wide
