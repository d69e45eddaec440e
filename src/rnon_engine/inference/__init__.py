"""Inference: the Inpainter orchestrator, tiling, intensity, classical fills, weights, provenance.

``Inpainter``, ``list_methods`` and ``describe`` are importable from here;
the import is lazy so that torch-free users (the batch driver) can use the submodules.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Inpainter", "describe", "list_methods"]


def __getattr__(name: str) -> Any:
    if name == "Inpainter":
        from rnon_engine.inference.inpainter import Inpainter

        return Inpainter
    if name == "list_methods":  # torch-free
        from rnon_engine.inference.weights_source import list_methods

        return list_methods
    if name == "describe":  # torch-free
        from rnon_engine.inference.provenance import describe

        return describe
    raise AttributeError(f"module 'rnon_engine.inference' has no attribute {name!r}")
