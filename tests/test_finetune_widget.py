"""The Fine-tune dock widget in a real napari viewer (run under Xvfb)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qtpy.QtCore import QTimer  # noqa: E402

from napari_rnon._finetune import FinetuneWidget  # noqa: E402
from napari_rnon._widget import RNON_METHODS, InpaintWidget  # noqa: E402
from rnon_engine.errors import Cancelled  # noqa: E402
from rnon_engine.nn.registry import create_model  # noqa: E402
from rnon_engine.nn.weights import read_metadata, save_weights  # noqa: E402
from rnon_engine.samples import fluorescence_planes  # noqa: E402
from rnon_engine.train.finetune import WEIGHTS_DIR_ENV  # noqa: E402

pytestmark = pytest.mark.gui
TIMEOUT_MS = 120_000
TINY = {
    "data.crop_size": 32,
    "data.scale_jitter": [1.0, 1.0],
    "repair.batch_size": 2,
    "checkpoint_every": 1000,
    "export_every": 1000,
}


@pytest.fixture
def setup(make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path / "weights"))
    torch.manual_seed(0)
    init = save_weights(
        create_model("rnon-repair", width=0.125, depth=4), tmp_path / "init.safetensors"
    )
    viewer = make_napari_viewer()
    stack = fluorescence_planes(2, (40, 40), seed=3)
    viewer.add_image(stack, name="stack")
    viewer.add_image(np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8), name="rgb")
    bad = np.zeros((40, 40), np.uint8)
    bad[5, :] = 1
    viewer.add_labels(bad, name="dead pixels")
    inpaint = InpaintWidget(viewer)
    viewer.window.add_dock_widget(inpaint, name="Inpaint")
    widget = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Fine-tune")
    widget.init = str(init)
    widget.device = "cpu"
    widget.overrides = dict(TINY)
    return viewer, widget, inpaint, init


def test_manifest_contributes_the_widget():
    from npe2 import PluginManifest

    path = Path(__file__).resolve().parents[1] / "src" / "napari_rnon" / "napari.yaml"
    manifest = PluginManifest.from_file(path)
    names = {w.display_name: w.command for w in manifest.contributions.widgets}
    assert names["Fine-tune"] == "napari-rnon.finetune_widget"
    cmd = {c.id: c.python_name for c in manifest.contributions.commands}
    assert cmd["napari-rnon.finetune_widget"] == "napari_rnon._finetune:FinetuneWidget"


def test_trains_stays_responsive_and_registers_weights(setup, wait_idle, tmp_path, notes):
    viewer, widget, inpaint, init = setup
    widget._images.value = [viewer.layers["stack"], viewer.layers["rgb"]]
    widget._exclude.value = viewer.layers["dead pixels"]
    widget._name.value = "cells v1"
    widget.max_steps = 6
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    losses = []
    widget._relay.progress.connect(lambda s, t, loss: losses.append((s, t, loss)))
    worker = widget.run()
    assert worker is not None and not widget._train_btn.enabled and widget._cancel_btn.enabled
    wait_idle(widget, TIMEOUT_MS)
    timer.stop()
    assert widget.last_error is None, widget.last_error
    path = tmp_path / "weights" / "cells v1.safetensors"
    assert widget.last_weights == path and path.is_file()
    assert read_metadata(path)["finetuned_from"] == str(init)
    assert [s for s, _, _ in losses] == list(range(1, 7)) and all(t == 6 for _, t, _ in losses)
    assert "loss" in widget._status.value or "Saved" in widget._status.value
    assert widget._bar.value == 1000 and widget._train_btn.enabled
    assert len(ticks) > 5  # the event loop kept running during training
    # The Inpaint widget lists the new weights in its one weights chooser and selects them.
    assert str(path) in inpaint._weights.choices
    assert inpaint._weights.value == str(path)
    assert inpaint.settings().name_or_path == str(path)
    # Auto (the default) routes to the packaged network only: new weights switch the
    # method to an RNON one, as from a classical method
    assert inpaint._method.value == RNON_METHODS[1]
    # fine-tuned weights are stage 1 only: "repair + optimise" says which stage 2 it uses
    inpaint._method.value = RNON_METHODS[0]
    assert inpaint._stage2_info.value.startswith("Stage 2: none")
    assert any("saved" in n for n in notes)
    # An Inpaint widget opened later lists them too.
    later = InpaintWidget(viewer)
    assert str(path) in later._weights.choices
    later._method.value = RNON_METHODS[1]  # Auto (the default) uses the packaged network
    later._weights.value = str(path)
    assert later.settings().name_or_path == str(path)


def test_selecting_new_weights_switches_a_classical_inpaint_widget(setup, wait_idle):
    viewer, widget, inpaint, _ = setup
    inpaint._method.value = "Telea (OpenCV)"
    widget._images.value = [viewer.layers["rgb"]]
    widget.max_steps = 1
    widget.run()
    wait_idle(widget, TIMEOUT_MS)
    assert inpaint._method.value == RNON_METHODS[1]


def test_cancel_saves_nothing(setup, qtbot, wait_idle, tmp_path, notes):
    viewer, widget, _, _ = setup
    widget._images.value = [viewer.layers["stack"]]
    widget._name.value = "cancelled"
    widget.max_steps = 100_000
    widget._minutes.value = 60
    started = []
    widget._relay.progress.connect(lambda s, t, loss: started.append(s))
    widget.run()
    qtbot.waitUntil(lambda: len(started) >= 1, timeout=TIMEOUT_MS)
    widget._cancel_btn.clicked.emit()
    wait_idle(widget, TIMEOUT_MS)
    assert isinstance(widget.last_error, Cancelled)
    assert not (tmp_path / "weights" / "cancelled.safetensors").exists()
    assert widget._status.value == "Cancelled."
    assert any("cancelled" in n for n in notes)


def test_user_errors_start_nothing(setup, qtbot, notes):
    viewer, widget, _, _ = setup
    widget._images.value = []
    assert widget.run() is None
    widget._images.value = [viewer.layers["rgb"]]
    widget._name.value = "../x"
    assert widget.run() is None
    widget._name.value = "ok"
    viewer.add_labels(np.zeros((7, 7), np.uint8), name="wrong shape")
    widget._exclude.value = viewer.layers["wrong shape"]
    assert widget.run() is None
    widget._exclude.value = None
    widget.init = "/nonexistent/weights.safetensors"
    assert widget.run() is None
    assert widget._worker is None
    joined = " ".join(notes)
    for fragment in ("at least one image", "file name", "matches none", "not found"):
        assert fragment in joined, fragment


def test_an_existing_name_is_never_overwritten_without_asking(setup, wait_idle, tmp_path, notes):
    viewer, widget, _, _ = setup
    folder = tmp_path / "weights"
    folder.mkdir()
    existing = folder / "my-model.safetensors"
    existing.write_bytes(b"the user's earlier model")
    widget._images.value = [viewer.layers["rgb"]]
    widget.max_steps = 1
    asked = []

    # "Cancel": nothing starts, the file is kept, the status line says why
    widget.confirm_overwrite = lambda path, free: asked.append((path, free)) or "cancel"
    assert widget._name.value == "my-model"
    assert widget.run() is None
    assert asked == [(existing, "my-model-2")]
    assert existing.read_bytes() == b"the user's earlier model"
    assert "Not started" in widget._status.value and "my-model-2" in widget._status.value

    # "Save as my-model-2": trains into the free name, the old file is kept
    widget.confirm_overwrite = lambda path, free: "rename"
    assert widget.run() is not None
    wait_idle(widget, TIMEOUT_MS)
    assert widget.last_error is None, widget.last_error
    assert widget.last_weights == folder / "my-model-2.safetensors"
    assert existing.read_bytes() == b"the user's earlier model"
    assert widget._name.value == "my-model-2"

    # "Replace": only then is the file replaced
    widget._name.value = "my-model"
    widget.confirm_overwrite = lambda path, free: "replace"
    assert widget.run() is not None
    wait_idle(widget, TIMEOUT_MS)
    assert widget.last_error is None, widget.last_error
    assert widget.last_weights == existing
    assert read_metadata(existing)["model_name"] == "rnon-repair"
