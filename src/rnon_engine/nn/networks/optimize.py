"""Stage 2: the optimization generator, a dilated residual network (paper Fig. 3a)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnon_engine.errors import InputError
from rnon_engine.nn.networks.common import kaiming_init, scaled
from rnon_engine.nn.registry import register_model

__all__ = ["OptimizeConfig", "OptimizeGenerator"]


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
    """

    width: float = 1.0
    blocks: int = 16
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    fuse_kernel: int = 1
    image_channels: int = 3

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

    @property
    def channels(self) -> int:
        """Feature channels of the residual trunk."""
        return scaled(32, self.width)

    @property
    def halo(self) -> int:
        """Receptive-field radius in pixels (how far an output pixel sees)."""
        return 4 + self.blocks * (max(self.dilations) + self.fuse_kernel // 2) + 1


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
    """

    def __init__(self, config: OptimizeConfig) -> None:
        super().__init__()
        self.config = config
        c, ci = config.channels, config.image_channels
        self.head = nn.Sequential(nn.Conv2d(ci, c, 9, padding=4), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(
            *(
                DilatedResidualBlock(c, config.dilations, config.fuse_kernel)
                for _ in range(config.blocks)
            )
        )
        self.tail = nn.Conv2d(c, ci, 3, padding=1)
        kaiming_init(self)
        # Damp each block's residual branch so activations do not grow with depth (without
        # this the trunk reaches ~1e4 after 16 blocks at init).
        with torch.no_grad():
            for block in self.blocks:
                block.fuse.weight.mul_(0.1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, image: Tensor) -> Tensor:
        """Refine ``image`` ``[N, 3, H, W]`` in [0, 1]; returns the same shape in [0, 1]."""
        ci = self.config.image_channels
        if image.ndim != 4 or image.shape[1] != ci:
            raise InputError(f"image must be [N,{ci},H,W], got {tuple(image.shape)}")
        # channels_last (NHWC) runs the thin 32-channel convs about 1.5x faster on oneDNN
        # (benchmarks/bench_networks.py); it changes the memory layout only, not the result
        # beyond float rounding. The output is returned in the usual contiguous layout.
        x = image.contiguous(memory_format=torch.channels_last)
        delta = self.tail(self.blocks(self.head(x)))
        return (image + delta).clamp(0.0, 1.0).contiguous()


register_model(
    "rnon-optimize",
    OptimizeConfig,
    OptimizeGenerator,
    description="stage 2 generator: dilated residual network (paper: 16 blocks, 32 channels)",
)
