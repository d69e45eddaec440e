"""Model registry: one name, one frozen config dataclass, one builder."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rnon_engine.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ModelSpec", "register_model", "create_model", "list_models", "get_spec"]


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows of one model name.

    Attributes:
        name: Registered name, e.g. ``"rnon-repair"``.
        config_cls: Frozen dataclass holding every hyper-parameter of the model.
        builder: Callable taking a ``config_cls`` instance and returning the module.
        defaults: Field values that this name sets on top of the dataclass defaults.
        description: One line for ``list_models``.
    """

    name: str
    config_cls: type
    builder: Callable[[Any], nn.Module]
    defaults: dict[str, Any]
    description: str

    def make_config(self, **overrides: Any) -> Any:
        """Build the config, refusing unknown fields with a message naming them.

        Raises:
            ConfigError: An unknown field, or a value the config class refuses.
        """
        known = {f.name for f in dataclasses.fields(self.config_cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(
                f"unknown option(s) {unknown} for model {self.name!r}; "
                f"known options: {sorted(known)}"
            )
        try:
            return self.config_cls(**{**self.defaults, **overrides})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad option for model {self.name!r}: {exc}") from None


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    config_cls: type,
    builder: Callable[[Any], nn.Module],
    description: str = "",
    **defaults: Any,
) -> ModelSpec:
    """Register a model name. Names are unique: registering one twice is an error."""
    if name in _REGISTRY:
        raise ValueError(f"model name {name!r} is already registered")
    if not (dataclasses.is_dataclass(config_cls) and config_cls.__dataclass_params__.frozen):
        raise TypeError(f"config class for {name!r} must be a frozen dataclass")
    spec = ModelSpec(name, config_cls, builder, dict(defaults), description)
    _REGISTRY[name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    """Return the spec for ``name``; an unknown name lists the known ones."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}"
        ) from None


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model with the paper's defaults, updated by ``overrides``.

    The returned module carries ``model_name`` and ``config`` attributes, which
    :func:`rnon_engine.save_weights` stores beside the tensors.

    Example:
        >>> g = create_model("rnon-repair", width=0.25, depth=6)
    """
    spec = get_spec(name)
    config = spec.make_config(**overrides)
    model = spec.builder(config)
    model.model_name = name
    model.config = config
    return model


def _ensure_loaded() -> None:
    import rnon_engine.nn.networks  # noqa: F401  (registers the built-in models)
