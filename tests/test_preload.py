"""The Inpaint widget's engine built ahead of the first Repair (no Qt needed)."""

from __future__ import annotations

import threading

import pytest

from napari_rnon._preload import EnginePreloader, build_prepared


def test_the_engine_built_for_a_key_is_taken_once_by_a_run_of_that_key() -> None:
    gate = threading.Event()
    threads: list[str] = []

    def build() -> object:
        threads.append(threading.current_thread().name)
        gate.wait(5)
        return "engine-a"

    pre = EnginePreloader()
    pre.start("a", build)
    pre.start("a", build)  # already on its way: not built twice
    assert pre.key == "a"
    assert pre.take("b") is None  # another run's settings: built by that run
    gate.set()
    assert pre.take("a") == "engine-a"  # waits for the build
    assert threads == ["rnon-preload"]
    assert pre.take("a") is None and pre.key is None


def test_new_settings_replace_the_engine_on_its_way() -> None:
    pre = EnginePreloader()
    pre.start("a", lambda: "engine-a")
    pre.start("b", lambda: "engine-b")
    assert pre.take("a") is None
    assert pre.take("b") == "engine-b"


def test_a_failed_build_is_raised_by_the_run_that_takes_it() -> None:
    def build() -> object:
        raise FileNotFoundError("weights file not found: x.safetensors")

    pre = EnginePreloader()
    pre.start("a", build)
    with pytest.raises(FileNotFoundError, match="x.safetensors"):
        pre.take("a")
    assert pre.key is None  # the next run builds its own (and reports the same error)


def test_build_prepared_opens_the_engines_sessions_when_it_can() -> None:
    class Engine:
        prepared = False

        def prepare(self) -> None:
            self.prepared = True

    engine = build_prepared(lambda settings: Engine(), None)
    assert engine.prepared
    assert build_prepared(lambda settings: settings, "telea") == "telea"  # no prepare()
