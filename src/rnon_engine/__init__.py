"""napari-rnon's engine: RNON networks, losses, training, inference. No GUI imports here."""

from rnon_engine.errors import Cancelled, ConfigError, InputError, RnonError, WeightsError
from rnon_engine.nn.registry import create_model, list_models, register_model
from rnon_engine.nn.weights import load_model, read_metadata, save_weights

__version__ = "0.1.0.dev0"

__all__ = [
    "Cancelled",
    "Inpainter",
    "list_methods",
    "ConfigError",
    "InputError",
    "RnonError",
    "WeightsError",
    "create_model",
    "list_models",
    "load_model",
    "read_metadata",
    "register_model",
    "save_weights",
    "__version__",
]


def __getattr__(name: str):  # lazy: importing the package stays cheap
    if name in ("Inpainter", "list_methods"):
        from rnon_engine.inference.inpainter import inpainter

        return getattr(inpainter, name)
    raise AttributeError(f"module 'rnon_engine' has no attribute {name!r}")
