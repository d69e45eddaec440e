"""Shared pytest fixtures: deterministic seeds and one torch thread (the CPU is shared)."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
