"""Two batches of windows at once (PlaneRun.run(workers=2), Inpainter.batch_workers)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from rnon_engine import create_model, save_weights
from rnon_engine.errors import Cancelled
from rnon_engine.inference.inpainter import Inpainter
from rnon_engine.inference.intensity import intensity_map
from rnon_engine.inference.ort_runner import ort_available
from rnon_engine.inference.plane_run import PlaneRun, Progress
from rnon_engine.inference.tiling import plan_tiles


def _plane(seed: int = 0):
    rng = np.random.default_rng(seed)
    img = rng.random((160, 200, 1), dtype=np.float32)
    hole = np.zeros((160, 200), bool)
    hole[70:78, 5:195] = True  # a stroke: blended windows, streamed in raster order
    for cy, cx in rng.integers(10, 150, (12, 2)):  # spots: packed windows
        hole[cy : cy + 3, cx : cx + 4] = True
    return img, hole


def _fill_with_jitter(calls: list[str]):
    """A deterministic fill (a function of the crop) that finishes in a shuffled order."""
    rng = np.random.default_rng(1)
    delays = iter(rng.uniform(0.0, 0.02, 10_000))
    lock = threading.Lock()

    def fill(crops, holes, window):
        with lock:
            calls.append(threading.current_thread().name)
            delay = next(delays)
        time.sleep(delay)
        means = crops.mean(axis=(1, 2), keepdims=True)
        return np.where(holes[..., None], means + 0.1 * crops[:, ::-1, ::-1], crops)

    return fill


def _run(workers: int, cancel=None, fill=None):
    img, hole = _plane()
    out = img.copy()
    seen: list[tuple[int, str]] = []
    plan = plan_tiles(hole, 64, 8, 16, multiple=8, grid_tile=32)
    progress = Progress(
        len(plan.windows), lambda d, n: seen.append((d, threading.current_thread().name)), cancel
    )
    calls: list[str] = []
    run = PlaneRun(img, out, hole, intensity_map(img, ~hole), progress)
    run.run(
        plan, fill or _fill_with_jitter(calls), batch_size=1, budget=2 * 32 * 32, workers=workers
    )
    return out, seen, calls, progress


def test_two_workers_write_the_same_pixels_in_the_same_order() -> None:
    ref, seen1, calls1, _ = _run(1)
    out, seen2, calls2, _ = _run(2)
    assert np.array_equal(out, ref)
    me = threading.current_thread().name
    assert [d for d, _ in seen2] == list(range(1, len(seen2) + 1)) == [d for d, _ in seen1]
    assert {t for _, t in seen2} == {me}  # progress and writes on the calling thread
    assert set(calls1) == {me}
    assert len(calls2) == len(calls1) > 4
    assert {t.rsplit("_", 1)[0] for t in calls2} == {"rnon-batch"}
    assert len(set(calls2)) == 2  # both workers did work


def test_cancel_stops_submitting_and_raises() -> None:
    asked = {"n": 0}

    def cancel():
        asked["n"] += 1
        return asked["n"] > 3

    with pytest.raises(Cancelled):
        _run(2, cancel=cancel)


def test_an_error_in_a_worker_reaches_the_caller_and_nothing_more_starts() -> None:
    started: list[int] = []

    def fill(crops, holes, window):
        started.append(1)
        if len(started) == 2:
            raise ValueError("boom in a worker")
        time.sleep(0.01)
        return crops

    with pytest.raises(ValueError, match="boom in a worker"):
        _run(2, fill=fill)
    time.sleep(0.1)
    # What was in flight or queued when it failed, no more: two workers, two batches
    # queued per worker (PlaneRun.run), and the one submitted before the first is written.
    assert len(started) <= 2 + 2 * 2 + 1


@pytest.mark.skipif(not ort_available(), reason="needs onnxruntime and onnx")
def test_the_inpainter_runs_two_onnx_batches_at_once_with_the_same_pixels(
    tmp_path, monkeypatch
) -> None:
    import rnon_engine.inference.classical as classical

    monkeypatch.setattr(classical.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    torch.manual_seed(0)
    rep = create_model("rnon-repair", width=0.125, depth=4, prefill="pushpull")
    opt = create_model("rnon-optimize", width=0.125, blocks=1, guide="biharmonic")
    with torch.no_grad():
        for net in (rep, opt):
            for name, p in net.named_parameters():
                if name.startswith(("head", "tail")):
                    p.normal_(0, 0.3)
    save_weights(opt, tmp_path / "o.safetensors")
    weights = save_weights(rep, tmp_path / "r.safetensors", stage2_file="o.safetensors")
    img, hole = _plane(3)
    image = (np.repeat(img, 3, axis=2) * 255).astype(np.uint8)
    before = torch.get_num_threads()
    try:
        one = Inpainter.from_pretrained(weights, "cpu", threads=1, tile_size=64)
        two = Inpainter.from_pretrained(weights, "cpu", threads=2, tile_size=64)
        eager = Inpainter.from_pretrained(weights, "cpu", threads=2, backend="torch")
        assert (one.batch_workers(), two.batch_workers(), eager.batch_workers()) == (1, 2, 1)
        names: set[str] = set()
        real = two._fill

        def spy(*args, **kwargs):
            names.add(threading.current_thread().name.rsplit("_", 1)[0])
            return real(*args, **kwargs)

        monkeypatch.setattr(two, "_fill", spy)
        ref = one.inpaint(image, hole)
        out = two.inpaint(image, hole)
    finally:
        torch.set_num_threads(before)
    assert names == {"rnon-batch"}
    assert np.array_equal(out, ref)
    assert np.array_equal(out[~hole], image[~hole])


@pytest.mark.skipif(not ort_available(), reason="needs onnxruntime and onnx")
def test_the_sessions_open_in_a_thread_while_the_windows_are_planned(tmp_path, monkeypatch):
    import rnon_engine.inference.ort_runner as ort_runner

    torch.manual_seed(0)
    rep = create_model("rnon-repair", width=0.125, depth=4, prefill="pushpull")
    weights = save_weights(rep, tmp_path / "r.safetensors")
    opened: list[str] = []
    real = ort_runner.OrtRunner.__init__

    def spy(self, *args, **kwargs):
        opened.append(threading.current_thread().name.rsplit("_", 1)[0])
        real(self, *args, **kwargs)

    monkeypatch.setattr(ort_runner.OrtRunner, "__init__", spy)
    inp = Inpainter.from_pretrained(weights, "cpu", threads=1)
    img, hole = _plane()
    assert opened == []  # nothing opens before there is work
    inp.inpaint(img[..., 0], np.zeros_like(hole))
    assert opened == []  # nor for an empty mask
    first = inp.inpaint(img[..., 0], hole)
    assert opened == ["rnon-open"] and inp.backend == "onnxruntime"
    np.testing.assert_array_equal(inp.inpaint(img[..., 0], hole), first)
    assert opened == ["rnon-open"]  # once


def test_a_batch_of_packed_windows_ends_where_their_holes_common_box_would_grow() -> None:
    from rnon_engine.inference.plane_run import batches
    from rnon_engine.inference.tiling import Window

    wins = [Window(0, 64, 64 * i, 64 * i + 64, (i,), packed=True) for i in range(6)]
    boxes = {
        0: (30, 34, 30, 34), 1: (30, 35, 29, 34), 2: (31, 34, 30, 33),  # the middle
        3: (2, 6, 2, 6), 4: (2, 5, 3, 6),  # the top left corner
        5: (56, 60, 56, 60),  # the bottom right one
    }
    budget = 64 * 64 * 10  # room for all six
    got = list(batches(wins, 1, budget, lambda w: boxes[w.labels[0]]))
    assert [[w.labels[0] for w in b] for b in got] == [[0, 1, 2], [3, 4], [5]]
    assert [len(b) for b in batches(wins, 1, budget)] == [6]  # without boxes: one batch
    # A looser spread keeps more together; windows that are not packed never split on it.
    assert len(list(batches(wins, 1, budget, lambda w: boxes[w.labels[0]], 50.0))) == 1
    grid = [Window(0, 64, 64 * i, 64 * i + 64, (), blend=True) for i in range(6)]
    assert [len(b) for b in batches(grid, 1, budget, lambda w: boxes[3 * (w.x0 // 64 % 2)])] == [6]


@pytest.mark.parametrize("workers", [1, 2])
def test_before_write_is_called_once_on_the_calling_thread_before_any_write(workers) -> None:
    # The inpainter copies the image into the result while the first batches are
    # computed, and waits for that copy here: nothing may be written before it.
    ref, _, _, _ = _run(1)
    img, hole = _plane()
    out = np.full_like(img, -1.0)
    calls: list[tuple[str, bool]] = []

    def before() -> None:
        calls.append((threading.current_thread().name, bool((out != -1).any())))
        time.sleep(0.05)  # a slow copy: the workers compute meanwhile
        out[...] = img

    plan = plan_tiles(hole, 64, 8, 16, multiple=8, grid_tile=32)
    run = PlaneRun(img, out, hole, intensity_map(img, ~hole), Progress(len(plan.windows)))
    run.run(
        plan, _fill_with_jitter([]), batch_size=1, budget=2 * 32 * 32, workers=workers,
        before_write=before,
    )
    assert calls == [(threading.current_thread().name, False)]
    assert np.array_equal(out, ref)
