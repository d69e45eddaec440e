"""Stage 1: the repair generator, a partial-convolution U-Net (paper Fig. 2a)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnon_engine.errors import InputError
from rnon_engine.nn.networks.common import kaiming_init, pad_to_multiple, scaled
from rnon_engine.nn.partial_conv import PartialConv2d
from rnon_engine.nn.prefill import pushpull_fill
from rnon_engine.nn.registry import register_model

__all__ = ["RepairConfig", "RepairGenerator"]

_PAPER_KERNELS = (7, 5, 5, 3, 3, 3, 3, 3)
_PAPER_CHANNELS = (64, 128, 256, 512, 512, 512, 512, 512)


@dataclass(frozen=True)
class RepairConfig:
    """Hyper-parameters of the repair generator.

    Attributes:
        width: Channel multiplier (1.0 = the paper's 64…512 channels).
        depth: Number of stride-2 encoder layers (the paper: 8). Inputs are padded to a
            multiple of ``2**depth``.
        pad_mode: How the input is padded up to that multiple: ``"hole"`` pads with mask 0
            (what the partial convolution assumes outside the image), ``"reflect"`` pads
            with a reflection of the image marked valid.
        image_channels: Channels of the image (3: RGB in [0, 1]).
        prefill: ``"none"`` (the paper: holes enter as zeros under the partial-conv mask)
            or ``"pushpull"`` (not in the paper): holes are first filled with
            :func:`rnon_engine.nn.prefill.pushpull_fill`, the network sees the filled image plus
            the hole mask as a fourth channel, and predicts a correction of the fill in
            logit space (its head starts at zero, so an untrained network returns the fill).
        head_channels: Output channels of the last decoder layer, which the 1×1 head maps
            to the image's channels (0: the image's channels, the paper's). On a CPU the
            full-resolution 3×3 convolution costs about the same for up to a vector
            register's width of outputs (16 floats with AVX-512, 8 with AVX2): ONNX
            Runtime's blocked kernels pad three outputs to a block, so 16 channels there
            are nearly free capacity (docs/benchmarks.md, *bench_networks-onnx*).
    """

    width: float = 1.0
    depth: int = 8
    pad_mode: str = "hole"
    image_channels: int = 3
    prefill: str = "none"
    head_channels: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.width <= 4:
            raise ValueError(f"width must be in (0, 4], got {self.width}")
        if not 1 <= self.depth <= 10:
            raise ValueError(f"depth must be in [1, 10], got {self.depth}")
        if self.pad_mode not in ("hole", "reflect"):
            raise ValueError(f"pad_mode must be 'hole' or 'reflect', got {self.pad_mode!r}")
        if self.prefill not in ("none", "pushpull"):
            raise ValueError(f"prefill must be 'none' or 'pushpull', got {self.prefill!r}")
        if not 0 <= self.head_channels <= 512:
            raise ValueError(f"head_channels must be in [0, 512], got {self.head_channels}")

    @property
    def encoder_channels(self) -> list[int]:
        """Output channels of each encoder layer."""
        base = list(_PAPER_CHANNELS) + [512] * max(0, self.depth - 8)
        return [scaled(c, self.width) for c in base[: self.depth]]

    @property
    def last_channels(self) -> int:
        """Output channels of the last decoder layer (see ``head_channels``)."""
        return self.head_channels or self.image_channels

    @property
    def encoder_kernels(self) -> list[int]:
        """Kernel size of each encoder layer."""
        return (list(_PAPER_KERNELS) + [3] * max(0, self.depth - 8))[: self.depth]


class _PConvBlock(nn.Module):
    """Partial conv → optional BN → activation, carrying the mask along."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, bn: bool, act: nn.Module) -> None:
        super().__init__()
        self.conv = PartialConv2d(cin, cout, k, stride=stride, padding=k // 2, bias=not bn)
        self.bn = nn.BatchNorm2d(cout) if bn else nn.Identity()
        self.act = act

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        x, mask = self.conv(x, mask)
        return self.act(self.bn(x)), mask

    def forward_parts(self, parts: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        """The block on inputs given in parts (:meth:`PartialConv2d.forward_parts`)."""
        x, mask = self.conv.forward_parts(parts)
        return self.act(self.bn(x)), mask


class RepairGenerator(nn.Module):
    """Partial-convolution U-Net: ``forward(image, mask) -> image``.

    Encoder: ``depth`` partial convs with stride 2 (kernels 7,5,5,3…; channels 64…512 times
    ``width``), BN (not on the first) and ReLU. Decoder: nearest ×2 upsampling, concatenation
    with the same-size encoder feature and its mask (the last skip is the input image),
    3×3 partial conv, BN (not on the last) and LeakyReLU(0.2); the last one outputs the
    image's channels, or ``head_channels``. Head: 1×1 conv to the image's channels and sigmoid.

    Any ``H, W`` is accepted: the input is padded at the bottom/right to a multiple of
    ``2**depth`` (see :attr:`RepairConfig.pad_mode`) and the output cropped back.

    Attributes:
        supports_pad_to: Declares that ``forward`` takes ``pad_to`` (computes windows that
            are not a multiple of ``2**depth``); the inpainter reads this capability.
    """

    supports_pad_to: ClassVar[bool] = True

    def __init__(self, config: RepairConfig) -> None:
        super().__init__()
        self.config = config
        ch, ks = config.encoder_channels, config.encoder_kernels
        c_img = config.image_channels
        c_in = c_img + (1 if config.prefill != "none" else 0)
        self.encoder = nn.ModuleList()
        cin = c_in
        for i, (cout, k) in enumerate(zip(ch, ks, strict=True)):
            self.encoder.append(_PConvBlock(cin, cout, k, 2, bn=i > 0, act=nn.ReLU(inplace=True)))
            cin = cout
        # Decoder level j (deepest first) joins the upsampled feature with the skip of level
        # j-1 (encoder output, or the image for the last level) and outputs that skip's width.
        skips = [c_in] + ch[:-1]
        self.decoder = nn.ModuleList()
        for j in reversed(range(config.depth)):
            cskip = skips[j]
            last = j == 0
            cout = config.last_channels if last else cskip
            self.decoder.append(
                _PConvBlock(cin + cskip, cout, 3, 1, bn=not last, act=nn.LeakyReLU(0.2))
            )
            cin = cout
        self.head = nn.Conv2d(config.last_channels, c_img, 1)
        kaiming_init(self)
        if config.prefill != "none":
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    @property
    def multiple(self) -> int:
        """Input sides are padded to a multiple of this."""
        return 2**self.config.depth

    def forward(self, image: Tensor, mask: Tensor, pad_to: int | None = None) -> Tensor:
        """Repair the holes of ``image``.

        Args:
            image: ``[N, 3, H, W]`` in [0, 1]; values in holes are ignored.
            mask: ``[N, 1, H, W]`` or ``[N, 3, H, W]``; 1 = valid, 0 = hole.
            pad_to: Pad the input to a multiple of this instead of :attr:`multiple`
                (a power of two). Smaller inputs are then computed as they are: the
                deepest levels shrink to 1×1 and the decoder upsamples to each skip's size.
                Inference uses it for small windows around small holes (a 48×48 window
                costs 1/28 of a 256×256 one); the default is what training sees.

        Returns:
            ``[N, 3, H, W]`` in [0, 1], the raw network output everywhere (callers
            composite it with the known pixels: ``mask·image + (1−mask)·out``).
        """
        c = self.config.image_channels
        if image.ndim != 4 or image.shape[1] != c:
            raise InputError(f"image must be [N,{c},H,W], got {tuple(image.shape)}")
        if mask.ndim != 4 or mask.shape[1] not in (1, c) or mask.shape[2:] != image.shape[2:]:
            raise InputError(
                f"mask must be [N,1,H,W] or [N,{c},H,W] matching image {tuple(image.shape)}, "
                f"got {tuple(mask.shape)}"
            )
        mask = mask.to(image.dtype)
        fill = None
        if self.config.prefill == "pushpull":
            valid1 = mask.amin(dim=1, keepdim=True)
            fill = pushpull_fill(image * valid1, valid1)
            image = torch.cat([fill, 1.0 - valid1], dim=1)
            # One all-valid mask for the batch: the masks of every level are then
            # computed once, not once per image (the same numbers).
            mask = torch.ones_like(valid1[:1])
        multiple = self.multiple if pad_to is None else int(pad_to)
        if multiple < 1 or multiple & (multiple - 1):
            raise InputError(f"pad_to must be a power of two, got {pad_to!r}")
        if self.config.pad_mode == "reflect":
            image, h, w = pad_to_multiple(image * mask, multiple, "reflect")
            mask, _, _ = pad_to_multiple(mask, multiple, "reflect")
        else:
            image, h, w = pad_to_multiple(image, multiple)
            mask, _, _ = pad_to_multiple(mask, multiple)
        return self.unet(image, mask, h, w, fill)

    def unet(self, x: Tensor, m: Tensor, h: int, w: int, fill: Tensor | None) -> Tensor:
        """The partial-convolution U-Net on padded ``x`` and mask ``m``, cropped to ``h×w``.

        With a push-pull ``fill`` the output is a correction to it in logit space. Shared
        by :meth:`forward` and the export graph (:mod:`rnon_engine.export.graphs`).
        """
        feats: list[tuple[Tensor, Tensor]] = [(x, m)]
        for block in self.encoder:
            x, m = block(x, m)
            feats.append((x, m))
        feats.pop()  # the bottleneck is x itself
        for block in self.decoder:
            skip_x, skip_m = feats.pop()
            # Nearest ×2; to the skip's size when a side was odd (inputs not padded to
            # ``multiple``), which is the same thing for padded ones.
            size = skip_x.shape[-2:]
            x = F.interpolate(x, size=size, mode="nearest")
            m = F.interpolate(m, size=size, mode="nearest")
            # The join [x, skip] with each part's own one-channel mask: the same numbers
            # as the concatenated C-channel mask, without building it.
            x, m = block.forward_parts([(x, m), (skip_x, skip_m)])
        x = self.head(x)[..., :h, :w]
        if fill is not None:
            return torch.sigmoid(torch.logit(fill.clamp(1e-3, 1 - 1e-3)) + x)
        return torch.sigmoid(x)


register_model(
    "rnon-repair",
    RepairConfig,
    RepairGenerator,
    description="stage 1 generator: partial-conv U-Net (paper: depth 8, width 1.0)",
)
