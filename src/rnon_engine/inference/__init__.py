"""Inference: the Inpainter orchestrator, tiling, intensity, classical fills, provenance.

``Inpainter``, ``list_methods`` and ``describe`` are importable from here;
the import is lazy so that torch-free users (the batch driver) can use the submodules.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Inpainter", "describe", "list_methods"]


def __getattr__(name: str) -> Any:
    if name in ("Inpainter", "list_methods", "describe"):
        from rnon_engine.inference.inpainter import inpainter

        return getattr(inpainter, name)
    raise AttributeError(f"module 'rnon_engine.inference.inpainter' has no attribute {name!r}")
