"""Stage 2: the optimization generator, a dilated residual network (paper Fig. 3a).

The paper's stage 2 sees only the stage-1 composite. With ``guide="biharmonic"`` it also
sees a classical fill of the same holes and the mask, and outputs a per-pixel blend of the
two plus a residual (a *learned blend*): the network's and the biharmonic fill's errors are
far from the same, so even their plain mean beats both (docs/evaluation.md, "Levers").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnon_engine.errors import InputError
from rnon_engine.nn.networks.common import kaiming_init, scaled
from rnon_engine.nn.registry import register_model

__all__ = ["GUIDES", "OptimizeConfig", "OptimizeGenerator"]

#: Classical fills a guided stage 2 can take as its second input ("none": the paper's).
GUIDES = ("none", "biharmonic")


@dataclass(frozen=True)
class OptimizeConfig:
    """Hyper-parameters of the optimization generator.

    Attributes:
        width: Channel multiplier (1.0 = the paper's 32 channels).
        blocks: Number of dilated residual blocks (the paper: 16).
        dilations: Dilations of the parallel 3×3 convs in each block (the paper: 1,2,4,8).
        fuse_kernel: Kernel of the conv fusing the concatenated branches back (not given by
            the paper; 1 = a 1×1 conv).
        image_channels: Channels of the image.
        guide: ``"none"`` (the paper) or the classical fill given as a second input with
            the mask (``"biharmonic"``: :func:`rnon_engine.inference.classical.fill`).
        head_kernel: Kernel of the first conv (the paper: 9).
        guide_init: Weight of the guide in the untrained network's blend (guided only).
    """

    width: float = 1.0
    blocks: int = 16
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    fuse_kernel: int = 1
    image_channels: int = 3
    guide: str = "none"
    head_kernel: int = 9
    guide_init: float = 0.3

    def __post_init__(self) -> None:
        if not 0 < self.width <= 8:
            raise ValueError(f"width must be in (0, 8], got {self.width}")
        if not 0 <= self.blocks <= 64:
            raise ValueError(f"blocks must be in [0, 64], got {self.blocks}")
        if self.fuse_kernel not in (1, 3):
            raise ValueError(f"fuse_kernel must be 1 or 3, got {self.fuse_kernel}")
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        if not self.dilations or min(self.dilations) < 1:
            raise ValueError(f"dilations must be one or more integers >= 1, got {self.dilations}")
        if self.guide not in GUIDES:
            raise ValueError(f"guide must be one of {GUIDES}, got {self.guide!r}")
        if self.head_kernel not in (1, 3, 5, 7, 9):
            raise ValueError(f"head_kernel must be 1, 3, 5, 7 or 9, got {self.head_kernel}")
        if not 0.0 < self.guide_init < 1.0:
            raise ValueError(f"guide_init must be in (0, 1), got {self.guide_init}")

    @property
    def guided(self) -> bool:
        """True when the network takes a classical fill and the mask as inputs too."""
        return self.guide != "none"

    @property
    def channels(self) -> int:
        """Feature channels of the residual trunk."""
        return scaled(32, self.width)

    @property
    def halo(self) -> int:
        """Receptive-field radius in pixels (how far an output pixel sees)."""
        return (
            self.head_kernel // 2 + self.blocks * (max(self.dilations) + self.fuse_kernel // 2) + 1
        )


class DilatedResidualBlock(nn.Module):
    """Parallel dilated 3×3 convs, concatenated, fused back, plus the block input."""

    def __init__(self, channels: int, dilations: tuple[int, ...], fuse_kernel: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, padding=d, dilation=d) for d in dilations
        )
        self.act = nn.ReLU(inplace=True)
        self.fuse = nn.Conv2d(
            channels * len(dilations), channels, fuse_kernel, padding=fuse_kernel // 2
        )

    def forward(self, x: Tensor) -> Tensor:
        y = torch.cat([branch(x) for branch in self.branches], dim=1)
        return x + self.fuse(self.act(y))


class OptimizeGenerator(nn.Module):
    """Dilated residual generator: ``forward(image) -> image``.

    Head 9×9 conv (32 channels) + ReLU, ``blocks`` dilated residual blocks, then a 3×3 conv
    to 3 channels whose output is added to the input image (residual output, clamped to
    [0, 1]). The tail is zero-initialised, so an untrained network is the identity.
    Fully convolutional: any ``H, W``.

    Guided (``config.guide != "none"``): ``forward(image, guide, valid)``; the head also
    reads the guide fill and the mask, and the tail gives one more channel, the logit of a
    per-pixel weight ``a``: ``out = image + sigmoid(a)·(guide − image) + residual``. The
    untrained network is the fixed blend ``(1 − guide_init)·image + guide_init·guide``.
    """

    def __init__(self, config: OptimizeConfig) -> None:
        super().__init__()
        self.config = config
        c, ci = config.channels, config.image_channels
        cin = 2 * ci + 1 if config.guided else ci
        k = config.head_kernel
        self.head = nn.Sequential(nn.Conv2d(cin, c, k, padding=k // 2), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(
            *(
                DilatedResidualBlock(c, config.dilations, config.fuse_kernel)
                for _ in range(config.blocks)
            )
        )
        self.tail = nn.Conv2d(c, ci + 1 if config.guided else ci, 3, padding=1)
        kaiming_init(self)
        # Damp each block's residual branch so activations do not grow with depth (without
        # this the trunk reaches ~1e4 after 16 blocks at init).
        with torch.no_grad():
            for block in self.blocks:
                block.fuse.weight.mul_(0.1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)
        if config.guided:
            p = config.guide_init
            with torch.no_grad():
                self.tail.bias[ci] = math.log(p / (1.0 - p))

    def forward(
        self, image: Tensor, guide: Tensor | None = None, valid: Tensor | None = None
    ) -> Tensor:
        """Refine ``image`` ``[N, 3, H, W]`` in [0, 1]; returns the same shape in [0, 1].

        Args:
            image: The stage-1 composite.
            guide: Guided networks only: the classical fill, ``[N, 3, H, W]`` in [0, 1].
            valid: Guided networks only: ``[N, 1, H, W]``, 1 = known pixel, 0 = hole.
        """
        ci = self.config.image_channels
        if image.ndim != 4 or image.shape[1] != ci:
            raise InputError(f"image must be [N,{ci},H,W], got {tuple(image.shape)}")
        if self.config.guided:
            if guide is None or valid is None:
                raise InputError(
                    f"this stage 2 is guided by a {self.config.guide} fill: pass guide and valid"
                )
            if guide.shape != image.shape or valid.shape != (image.shape[0], 1, *image.shape[2:]):
                raise InputError(
                    f"guide must be {tuple(image.shape)} and valid "
                    f"{(image.shape[0], 1, *image.shape[2:])}, got {tuple(guide.shape)} and "
                    f"{tuple(valid.shape)}"
                )
        # channels_last (NHWC) runs the thin 32-channel convs about 1.5x faster on oneDNN
        # (benchmarks/bench_networks.py); it changes the memory layout only, not the result
        # beyond float rounding. The output is returned in the usual contiguous layout.
        x = self.inputs(image, guide, valid).contiguous(memory_format=torch.channels_last)
        return self.output(image, self.trunk(x), guide).contiguous()

    def inputs(self, image: Tensor, guide: Tensor | None, valid: Tensor | None) -> Tensor:
        """The head's input: the image, or (guided) image, guide and mask stacked."""
        if not self.config.guided:
            return image
        assert guide is not None and valid is not None
        return torch.cat([image, guide, valid.to(image.dtype)], dim=1)

    def trunk(self, x: Tensor) -> Tensor:
        """Head, residual blocks and tail: the raw output channels."""
        return self.tail(self.blocks(self.head(x)))

    def output(self, image: Tensor, y: Tensor, guide: Tensor | None = None) -> Tensor:
        """The refined image from the trunk's output ``y`` (clamped to [0, 1])."""
        if not self.config.guided:
            return (image + y).clamp(0.0, 1.0)
        assert guide is not None
        ci = self.config.image_channels
        weight = torch.sigmoid(y[:, ci : ci + 1])
        return (image + weight * (guide - image) + y[:, :ci]).clamp(0.0, 1.0)


register_model(
    "rnon-optimize",
    OptimizeConfig,
    OptimizeGenerator,
    description="stage 2 generator: dilated residual network (paper: 16 blocks, 32 channels)",
)
