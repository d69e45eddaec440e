"""The Inpaint widget's engine, built in a background thread before the first Repair.

Building an engine is what the first Repair of a napari session would otherwise wait for:
importing the engine, loading the weights, opening ONNX Runtime's sessions (and, the first
time a model is used after an install, exporting its graphs: seconds). The widget asks for
the engine of its current settings a moment after they last changed; a run whose settings
match takes that engine (waiting for what is left of its build) instead of building one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any

__all__ = ["EnginePreloader", "build_prepared"]


class EnginePreloader:
    """At most one engine, built in a daemon thread for a key (the settings it serves).

    A daemon thread, so that closing napari never waits for a build nobody needs.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: Hashable | None = None
        self._future: Future[Any] | None = None

    @property
    def key(self) -> Hashable | None:
        """The key of the engine being built or ready to take (None: none)."""
        return self._key

    def start(self, key: Hashable, build: Callable[[], Any]) -> None:
        """Start ``build()`` for ``key``, unless the engine for ``key`` is already on its way.

        An engine started earlier for another key is dropped (its thread finishes alone).
        """
        with self._lock:
            if key == self._key:
                return
            future: Future[Any] = Future()
            self._key, self._future = key, future

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(build())
            except BaseException as exc:  # handed to the run that takes it
                future.set_exception(exc)

        threading.Thread(target=run, name="rnon-preload", daemon=True).start()

    def take(self, key: Hashable) -> Any | None:
        """The engine built for ``key``, waiting for its build; None if none was started.

        Taken once: the preloader holds nothing afterwards.

        Raises:
            Exception: What the build raised (the run reports it as its own).
        """
        with self._lock:
            if key != self._key or self._future is None:
                return None
            future, self._key, self._future = self._future, None, None
        return future.result()


def build_prepared(factory: Callable[[Any], Any], settings: Any) -> Any:
    """``factory(settings)``, with its ONNX Runtime sessions opening (``prepare()``)."""
    engine = factory(settings)
    prepare = getattr(engine, "prepare", None)
    if callable(prepare):
        prepare()
    return engine
