"""Shared pytest fixtures: deterministic seeds and one torch thread (the CPU is shared).

The GUI fixtures (``notes``, ``wait_idle``) import napari and pytest-qt only when a test
asks for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _ort_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Exported ONNX graphs (backend "onnxruntime") go to a per-session folder, not ~/.cache."""
    import os

    old = os.environ.get("RNON_CACHE_DIR")
    os.environ["RNON_CACHE_DIR"] = str(tmp_path_factory.mktemp("rnon-cache"))
    yield
    if old is None:
        os.environ.pop("RNON_CACHE_DIR", None)
    else:
        os.environ["RNON_CACHE_DIR"] = old


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def notes() -> Iterator[list[str]]:
    """Messages of the napari notifications shown during the test, in order."""
    from napari.utils.notifications import notification_manager

    seen: list[str] = []

    def record(n: Any) -> None:
        seen.append(str(n.message))

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)


@pytest.fixture
def wait_idle(qtbot: Any) -> Callable[..., None]:
    """``wait_idle(widget, timeout_ms)``: wait until a dock widget's worker has finished."""

    def wait(widget: Any, timeout_ms: int = 120_000) -> None:
        qtbot.waitUntil(lambda: widget._worker is None, timeout=timeout_ms)

    return wait
