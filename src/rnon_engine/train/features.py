"""Frozen feature networks for the perceptual and style losses (VGG16, VGG19, DenseNet-121).

The paper's layer names come from Keras. They map onto torchvision's modules as follows
(``features`` is torchvision's ``model.features``; a layer's feature is the output of the
module named):

=============== ================ ======================================== ======== ======
network         layer            torchvision module                       channels stride
=============== ================ ======================================== ======== ======
vgg16 / vgg19   ``pool1``        ``features[4]`` (MaxPool after block 1)  64       2
vgg16 / vgg19   ``pool2``        ``features[9]`` (MaxPool after block 2)  128      4
vgg16           ``pool3``        ``features[16]`` (MaxPool after block 3) 256      8
vgg19           ``pool3``        ``features[18]``                         256      8
vgg19           ``block3_conv4`` ``features[17]``: the ReLU after conv3_4 256      4
                                 (Keras' ``block3_conv4`` has its ReLU
                                 built in, so the feature is post-ReLU)
densenet121     ``conv0``        ``features.relu0``: conv0 → norm0 →     64       2
                                 relu0, before the max-pool (Keras'
                                 ``conv1/relu``; the paper's "conv1")
densenet121     ``pool2_conv``   ``features.transition1.conv`` (Keras'   128      4
                                 ``pool2_conv``), before the avg-pool
densenet121     ``pool2``        ``features.transition1`` output, i.e.   128      8
                                 after its avg-pool (Keras' ``pool2_pool``)
densenet121     ``pool3``        ``features.transition2`` output          256      16
                                 (Keras' ``pool3_pool``)
=============== ================ ======================================== ======== ======

Each network is cut after the last layer asked for (no classifier is kept), frozen
(``requires_grad=False``) and kept in eval mode even when a parent module is put in training
mode, so DenseNet's batch norms always use their running statistics. Gradients still flow
to the input. Inputs are images in ``[0, 1]``; the ImageNet mean/std normalisation happens
inside. All in-place ReLUs are made out-of-place so that a tapped feature is never
overwritten by the next layer.

Weights (``weights=`` of :func:`build_feature_extractor`):

* ``"imagenet"``: torchvision's ``*_Weights.IMAGENET1K_V1`` file, read from torchvision's
  cache (``torch.hub.get_dir()/checkpoints``, i.e. ``$TORCH_HOME/hub/checkpoints``). Nothing
  is downloaded; if the file is missing, :class:`~rnon_engine.errors.WeightsError` names the
  file, the directory and the explicit-path alternative.
* a path (``str`` or ``os.PathLike``): a state dict of the network, either torchvision's
  whole-model file (the classifier keys are ignored) or a :class:`FeatureExtractor`'s own
  ``state_dict()``; ``.safetensors`` is read with safetensors, anything else with
  ``torch.load(..., weights_only=True)`` (nothing is unpickled).
* ``"random"``: torchvision's own initialisation, seeded; a :class:`FeatureWeightsWarning`
  says that perceptual and style terms are then not meaningful.
* ``None`` (or ``"none"``): no network; :func:`build_feature_extractor` returns ``None``
  and the losses skip the perceptual and style terms.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torchvision
from torch import nn

from rnon_engine.errors import ConfigError, InputError, WeightsError

__all__ = [
    "FEATURE_LAYERS",
    "DEFAULT_LAYERS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "FeatureExtractor",
    "FeatureWeightsWarning",
    "LayerInfo",
    "build_feature_extractor",
    "imagenet_weights_file",
]

FeatureKind = Literal["vgg16", "vgg19", "densenet121"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class LayerInfo:
    """Where a named feature layer is tapped and what it yields.

    Attributes:
        module: Dotted name of the module inside the network's ``features`` whose output is
            the feature.
        channels: Channel count of the feature.
        stride: Spatial down-sampling of the feature relative to the input.
    """

    module: str
    channels: int
    stride: int


FEATURE_LAYERS: dict[str, dict[str, LayerInfo]] = {
    "vgg16": {
        "pool1": LayerInfo("4", 64, 2),
        "pool2": LayerInfo("9", 128, 4),
        "block3_conv3": LayerInfo("15", 256, 4),
        "pool3": LayerInfo("16", 256, 8),
    },
    "vgg19": {
        "pool1": LayerInfo("4", 64, 2),
        "pool2": LayerInfo("9", 128, 4),
        "block3_conv4": LayerInfo("17", 256, 4),
        "pool3": LayerInfo("18", 256, 8),
    },
    "densenet121": {
        "conv0": LayerInfo("relu0", 64, 2),
        "pool2_conv": LayerInfo("transition1.conv", 128, 4),
        "pool2": LayerInfo("transition1.pool", 128, 8),
        "pool3": LayerInfo("transition2.pool", 256, 16),
    },
}
"""Named layers per network (see the module docstring for the Keras correspondence)."""

DEFAULT_LAYERS: dict[str, tuple[str, ...]] = {
    "vgg16": ("pool1", "pool2", "pool3"),
    "vgg19": ("block3_conv4",),
    "densenet121": ("conv0", "pool2", "pool3"),
}
"""The layers the paper uses when none are named (stage 1 for VGG16/DenseNet, stage 2 VGG19)."""

_WEIGHTS_ENUMS = {
    "vgg16": "VGG16_Weights",
    "vgg19": "VGG19_Weights",
    "densenet121": "DenseNet121_Weights",
}

# Old DenseNet checkpoints (torchvision's own ImageNet file among them) name keys
# "denselayer1.norm.1.weight" where the module is "denselayer1.norm1"; torchvision's
# densenet loader applies this same rewrite.
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


class FeatureWeightsWarning(UserWarning):
    """Feature networks are randomly initialised: perceptual/style terms are not meaningful."""


def imagenet_weights_file(kind: str) -> Path:
    """Return where torchvision's cache keeps the ImageNet weights of ``kind``.

    Args:
        kind: ``"vgg16"``, ``"vgg19"`` or ``"densenet121"``.

    Returns:
        ``torch.hub.get_dir()/checkpoints/<file name of the weights enum's URL>``; the file
        may not exist.
    """
    _check_kind(kind)
    enum = getattr(torchvision.models, _WEIGHTS_ENUMS[kind]).IMAGENET1K_V1
    filename = os.path.basename(enum.url)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _check_kind(kind: str) -> None:
    if kind not in FEATURE_LAYERS:
        raise ConfigError(
            f"unknown feature network {kind!r}; choose one of {sorted(FEATURE_LAYERS)}"
        )


def _build_features(kind: str) -> nn.Sequential:
    """Build torchvision's ``features`` part of ``kind`` with torchvision's initialisation."""
    if kind == "densenet121":
        return torchvision.models.densenet121(weights=None).features
    # Building the whole VGG would allocate and initialise its 120 M-parameter classifier
    # only to drop it; make_layers/cfgs are the pieces torchvision's vgg16/vgg19 use.
    from torchvision.models import vgg as tv_vgg

    features = tv_vgg.make_layers(tv_vgg.cfgs["D" if kind == "vgg16" else "E"], batch_norm=False)
    for m in features.modules():  # same as torchvision.models.VGG.__init__
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
    return features


def _flat_steps(features: nn.Sequential) -> list[tuple[str, nn.Module]]:
    """Flatten ``features`` into the steps it runs, expanding nested ``nn.Sequential`` ones."""
    steps: list[tuple[str, nn.Module]] = []
    for name, child in features.named_children():
        if isinstance(child, nn.Sequential):
            steps.extend((f"{name}.{sub}", m) for sub, m in child.named_children())
        else:
            steps.append((name, child))
    return steps


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` without unpickling anything."""
    if not path.is_file():
        raise WeightsError(f"feature-network weights file {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, pickled objects, foreign formats
        raise WeightsError(
            f"cannot read feature-network weights {str(path)!r} ({type(exc).__name__}: {exc}); "
            "expected a state dict saved with torch.save(model.state_dict()) or safetensors"
        ) from exc
    if (
        isinstance(state, Mapping)
        and "state_dict" in state
        and isinstance(state["state_dict"], Mapping)
    ):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsError(
            f"{str(path)!r} does not hold a state dict (a mapping of names to tensors)"
        )
    return dict(state)


class FeatureExtractor(nn.Module):
    """A frozen, eval-mode, truncated torchvision network returning features at named layers.

    Build it with :func:`build_feature_extractor`.

    Attributes:
        kind: ``"vgg16"``, ``"vgg19"`` or ``"densenet121"``.
        layers: The layer names whose features :meth:`forward` returns, in that order.
        weights_source: Where the weights came from, for logs and model cards (for example
            ``"imagenet:vgg16-397923af.pth"``, ``"random:seed=0"``, ``"file:/path"``).
        pretrained: False when the weights are random (the features then carry no learned
            meaning).
        features: torchvision's ``features`` module cut after the last needed layer; its
            state-dict keys are torchvision's (``features.0.weight``...).
    """

    def __init__(
        self,
        kind: str,
        features: nn.Sequential,
        layers: Sequence[str],
        weights_source: str,
        pretrained: bool,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.layers = tuple(layers)
        self.weights_source = weights_source
        self.pretrained = pretrained
        self.features = features
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        info = FEATURE_LAYERS[kind]
        self._taps = {info[name].module: i for i, name in enumerate(self.layers)}
        self._steps = _flat_steps(self.features)
        last = max(i for i, (n, _) in enumerate(self._steps) if n in self._taps)
        self._steps = self._steps[: last + 1]
        self.min_size = max(info[name].stride for name in self.layers)
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    @property
    def channels(self) -> tuple[int, ...]:
        """Channel count of each returned feature, in :attr:`layers` order."""
        return tuple(FEATURE_LAYERS[self.kind][n].channels for n in self.layers)

    @property
    def strides(self) -> tuple[int, ...]:
        """Spatial stride of each returned feature, in :attr:`layers` order."""
        return tuple(FEATURE_LAYERS[self.kind][n].stride for n in self.layers)

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Stay in eval mode whatever ``mode`` is (the network is a fixed measuring device)."""
        return super().train(False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Return the features of ``image`` at :attr:`layers`.

        Args:
            image: ``[N, 3, H, W]`` floating point in ``[0, 1]``; ``H, W`` at least
                :attr:`min_size`.

        Returns:
            One tensor ``[N, C_l, H // s_l, W // s_l]`` per layer, in :attr:`layers` order.
        """
        if image.ndim != 4 or image.shape[1] != 3 or not image.is_floating_point():
            raise InputError(
                f"{self.kind} features expect a float image [N, 3, H, W], got shape "
                f"{tuple(image.shape)} dtype {image.dtype}"
            )
        if min(image.shape[2:]) < self.min_size:
            raise InputError(
                f"{self.kind} features at {self.layers} need H and W >= {self.min_size}, "
                f"got image shape {tuple(image.shape)}"
            )
        x = (image - self.mean.to(image.dtype)) / self.std.to(image.dtype)
        out: list[torch.Tensor | None] = [None] * len(self.layers)
        for name, module in self._steps:
            x = module(x)
            if name in self._taps:
                out[self._taps[name]] = x
        return out  # type: ignore[return-value]

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return f"kind={self.kind!r}, layers={self.layers}, weights={self.weights_source!r}"


def build_feature_extractor(
    kind: str,
    weights: str | os.PathLike | None = "imagenet",
    layers: Sequence[str] | None = None,
    *,
    seed: int = 0,
) -> FeatureExtractor | None:
    """Build a frozen feature network.

    Args:
        kind: ``"vgg16"``, ``"vgg19"`` or ``"densenet121"``.
        weights: ``"imagenet"`` (torchvision's cache, no download), ``"random"`` (seeded
            init), a path to a state-dict file, or ``None``/``"none"`` (no network).
        layers: Layer names from :data:`FEATURE_LAYERS` ``[kind]``; defaults to
            :data:`DEFAULT_LAYERS` ``[kind]``.
        seed: Seed of the random initialisation (``weights="random"``); the global RNG state
            is left as it was.

    Returns:
        The :class:`FeatureExtractor`, or ``None`` when ``weights`` is ``None``/``"none"``.

    Raises:
        ConfigError: Unknown network, layer or weights choice.
        WeightsError: ImageNet weights not in the cache, or an unreadable/foreign file.
    """
    _check_kind(kind)
    if weights is None or (isinstance(weights, str) and weights.lower() == "none"):
        return None
    layers = tuple(DEFAULT_LAYERS[kind] if layers is None else layers)
    unknown = [n for n in layers if n not in FEATURE_LAYERS[kind]]
    if not layers or unknown:
        raise ConfigError(
            f"unknown {kind} feature layer(s) {unknown or '(none given)'}; "
            f"choose from {sorted(FEATURE_LAYERS[kind])}"
        )

    # Resolve (and refuse) the weights source before building anything.
    path: Path | None = None
    if isinstance(weights, str) and weights == "random":
        source, pretrained = f"random:seed={seed}", False
    elif isinstance(weights, str) and weights == "imagenet":
        path = imagenet_weights_file(kind)
        if not path.is_file():
            raise WeightsError(
                f"ImageNet weights for {kind} are not in torchvision's cache and cannot be "
                f"downloaded here: expected file {path.name!r} in directory "
                f"{str(path.parent)!r} (torch.hub.get_dir()/checkpoints; set TORCH_HOME to "
                f"move it). Copy {path.name} (from "
                f"{getattr(torchvision.models, _WEIGHTS_ENUMS[kind]).IMAGENET1K_V1.url}) "
                f"there, or give its path explicitly as the {kind} feature weights "
                f"(weights='/path/to/{path.name}'); or choose 'random' or 'none' feature "
                "networks in the configuration."
            )
        source, pretrained = f"imagenet:{path.name}", True
    elif isinstance(weights, (str, os.PathLike)):
        path = Path(weights).expanduser()
        source, pretrained = f"file:{path}", True
    else:
        raise ConfigError(
            f"feature weights must be 'imagenet', 'random', 'none', None or a path, got {weights!r}"
        )
    state = None if path is None else _read_state_dict(path)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        features = _build_features(kind)
    # Cut after the top-level child that holds the last tapped layer (slicing an
    # nn.Sequential keeps the children's names, so state-dict keys stay torchvision's).
    names = [n for n, _ in features.named_children()]
    tops = [FEATURE_LAYERS[kind][n].module.split(".")[0] for n in layers]
    features = features[: max(names.index(t) for t in tops) + 1]
    for m in features.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False

    if state is None:
        warnings.warn(
            f"{kind} feature network is randomly initialised (seed {seed}): perceptual and "
            "style loss terms are not meaningful; a model trained so must say it was trained "
            "without ImageNet features",
            FeatureWeightsWarning,
            stacklevel=2,
        )
    else:
        assert path is not None
        _load_into(features, kind, state, path)

    return FeatureExtractor(kind, features, layers, source, pretrained)


def _load_into(
    features: nn.Sequential,
    kind: str,
    state: dict[str, torch.Tensor],
    path: Path,
) -> None:
    """Load the ``features.*`` entries of ``state`` that the truncated ``features`` holds."""
    if kind == "densenet121":
        state = {
            (f"{m.group(1)}{m.group(2)}" if (m := _DENSENET_OLD_KEY.match(k)) else k): v
            for k, v in state.items()
        }
    needed = {f"features.{k}": v for k, v in features.state_dict().items()}
    # Old checkpoints (torchvision's ImageNet DenseNet among them) predate BatchNorm's
    # num_batches_tracked counter; it is unused in eval mode, so it may be absent.
    missing = [k for k in needed if k not in state and not k.endswith(".num_batches_tracked")]
    if missing:
        raise WeightsError(
            f"{str(path)!r} is not a torchvision {kind} state dict: {len(missing)} needed "
            f"key(s) missing, e.g. {missing[:3]}"
        )
    present = [k for k in needed if k in state]
    bad = [
        f"{k}: {tuple(state[k].shape)} != {tuple(needed[k].shape)}"
        for k in present
        if state[k].shape != needed[k].shape
    ]
    if bad:
        raise WeightsError(f"{str(path)!r} does not match {kind}: shape mismatch {bad[:3]}")
    sub = {k[len("features.") :]: state[k] for k in present}
    features.load_state_dict(sub, strict=False)  # completeness checked above
