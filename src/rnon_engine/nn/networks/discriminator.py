"""The two discriminators (paper Fig. 2b and 3b, after SRGAN)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from rnon_engine.errors import InputError
from rnon_engine.nn.networks.common import kaiming_init, scaled
from rnon_engine.nn.registry import register_model

__all__ = ["DiscriminatorConfig", "Discriminator"]

_BASE = (64, 64, 128, 128, 256, 256, 512, 512)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Hyper-parameters of an SRGAN-style discriminator.

    Attributes:
        width: Channel multiplier (1.0 = 64…512).
        blocks: Conv blocks (8 for stage 1, 10 for stage 2); strides alternate 1, 2.
        dense: Width of the hidden dense layer (the paper: 1024).
        image_channels: Channels of the image.
    """

    width: float = 1.0
    blocks: int = 8
    dense: int = 1024
    image_channels: int = 3

    def __post_init__(self) -> None:
        if not 0 < self.width <= 4:
            raise ValueError(f"width must be in (0, 4], got {self.width}")
        if not 2 <= self.blocks <= 16:
            raise ValueError(f"blocks must be in [2, 16], got {self.blocks}")
        if self.dense < 1:
            raise ValueError(f"dense must be positive, got {self.dense}")

    @property
    def channels(self) -> list[int]:
        """Output channels of each conv block (beyond 8 blocks: 512)."""
        base = list(_BASE) + [512] * max(0, self.blocks - 8)
        return [scaled(c, self.width) for c in base[: self.blocks]]


class Discriminator(nn.Module):
    """SRGAN-style discriminator: ``forward(image) -> logits [N, 1]``.

    Conv blocks (3×3, strides 1,2,1,2…, BN except the first, LeakyReLU 0.2), global
    average pooling (so any input size works; SRGAN's dense layer assumed 96×96),
    dense → LeakyReLU → dense 1.
    """

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        cin = config.image_channels
        for i, cout in enumerate(config.channels):
            stride = 1 if i % 2 == 0 else 2
            layers.append(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(cin, config.dense),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(config.dense, 1),
        )
        kaiming_init(self, negative_slope=0.2)

    def forward(self, image: Tensor) -> Tensor:
        """Score ``image`` ``[N, 3, H, W]``; returns raw logits ``[N, 1]``."""
        ci = self.config.image_channels
        if image.ndim != 4 or image.shape[1] != ci:
            raise InputError(f"image must be [N,{ci},H,W], got {tuple(image.shape)}")
        return self.classifier(self.pool(self.features(image)))


register_model(
    "rnon-repair-disc",
    DiscriminatorConfig,
    Discriminator,
    description="stage 1 discriminator: 8 conv blocks (SRGAN)",
    blocks=8,
)
register_model(
    "rnon-optimize-disc",
    DiscriminatorConfig,
    Discriminator,
    description="stage 2 discriminator: 10 conv blocks",
    blocks=10,
)
