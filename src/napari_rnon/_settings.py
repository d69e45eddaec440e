"""What a run of the Inpaint widget asks the engine for (no Qt, no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["EngineSettings"]


@dataclass(frozen=True)
class EngineSettings:
    """Everything that selects an engine instance (the cache key) plus the stages to run.

    Attributes:
        name_or_path: ``"default"``, a classical method name, or a weights file path.
        stage2: Optional separate stage-2 (optimise) weights file.
        device: ``"auto"``, ``"cpu"``, ``"cuda:0"``...
        tile_size: Tile side passed to the engine.
        stages: ``"both"``, ``"repair"`` or ``"optimize"``.
    """

    name_or_path: str
    stage2: str | None
    device: str
    tile_size: int
    stages: str

    @property
    def engine_key(self) -> tuple[Any, ...]:
        """The fields that select the Inpainter instance."""
        return (self.name_or_path, self.stage2, self.device, self.tile_size)
