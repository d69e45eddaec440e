"""The Inpaint widget as a user meets it (issue 19), in a real napari viewer under Xvfb.

Results named by what made them and always shown, before/after, the mask kept selected;
progress and errors in the widget; the mask tools; the widget's layout and wording; the
OME-Zarr reader's units and light imports.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from app_model.types import KeyBinding  # noqa: E402

from napari_rnon._widget import (  # noqa: E402
    ALL_PLANES,
    AUTO_METHOD,
    COMPARE_KEY,
    RNON_METHODS,
    InpaintWidget,
    load_inpainter,
)
from rnon_engine.errors import Cancelled  # noqa: E402

pytestmark = pytest.mark.gui
TIMEOUT_MS = 60_000
ROOT = Path(__file__).resolve().parents[1]


class Fake:
    """A stand-in for the RNON engine: ``tiles`` steps of ``delay`` s, masked pixels -> 7."""

    provenance = {"method": "fake"}

    def __init__(self, tiles=1, delay=0.0):
        self.tiles, self.delay = tiles, delay
        self.stages: list[str] = []
        self.started = threading.Event()

    def inpaint(self, image, mask, *, stages, channel_axis, progress=None, cancel=None):
        self.stages.append(stages)
        self.started.set()
        for i in range(self.tiles):
            if cancel is not None and cancel():
                raise Cancelled("cancelled")
            time.sleep(self.delay)
            if progress is not None:
                progress(i + 1, self.tiles)
        out = image.copy()
        out[mask != 0] = 7
        return out


@pytest.fixture
def viewer_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = InpaintWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Inpaint")
    return viewer, widget


def fake_rnon(widget, fake):
    """RNON runs use ``fake``; the classical methods stay real."""
    if widget._method.value == AUTO_METHOD:  # these runs are RNON runs (Auto is the default)
        widget._method.value = RNON_METHODS[0]
    widget.inpainter_factory = lambda s: fake if s.name_or_path == "default" else load_inpainter(s)


@pytest.fixture
def run_to_end(wait_idle):
    def start_and_wait(widget, step="repair"):
        worker = widget.run(step)
        assert worker is not None, widget._status.value
        wait_idle(widget, TIMEOUT_MS)
        return worker

    return start_and_wait


def top(viewer):
    return list(viewer.layers)[-1]


def test_each_method_has_its_own_result_on_top_and_the_mask_stays_selected(
    viewer_widget, run_to_end
):
    """Issue 19.1: Repair (RNON) -> Optimise -> Telea -> Repair shows each new result."""
    viewer, widget = viewer_widget
    rng = np.random.default_rng(0)
    image = rng.integers(0, 200, (40, 40), dtype=np.uint8)
    src = viewer.add_image(image, name="img")
    widget._image.value = src
    mask = widget.new_mask()
    mask.data_setitem((np.arange(10, 20), np.full(10, 15)), 1)
    fake = Fake()
    fake_rnon(widget, fake)

    widget._method.value = RNON_METHODS[1]
    run_to_end(widget)
    stage1 = viewer.layers["img repaired (RNON stage 1)"]
    assert top(viewer) is stage1 and stage1.visible
    assert viewer.layers.selection.active is mask and mask.mode == "paint"

    run_to_end(widget, "optimise")
    assert fake.stages == ["repair", "optimize"]
    optimised = viewer.layers["img repaired (RNON stage 1 + optimise)"]
    assert top(viewer) is optimised
    assert viewer.layers.selection.active is mask

    widget._method.value = "Telea (OpenCV)"
    run_to_end(widget)
    telea = viewer.layers["img repaired (telea)"]
    assert top(viewer) is telea and telea.visible  # the canvas shows the new result
    painted = mask.data != 0
    assert (telea.data[painted] != 7).any()  # Telea's pixels, not the fake's
    np.testing.assert_array_equal(telea.data[~painted], image[~painted])

    # the same settings again update their own layer and bring it back on top
    n_layers = len(viewer.layers)
    stage1.visible = False
    widget._method.value = RNON_METHODS[1]
    mask.data_setitem((np.array([30]), np.array([30])), 1)
    run_to_end(widget)
    assert len(viewer.layers) == n_layers
    assert viewer.layers["img repaired (RNON stage 1)"] is stage1
    assert top(viewer) is stage1 and stage1.visible and stage1.data[30, 30] == 7
    assert viewer.layers.selection.active is mask and mask.mode == "paint"
    assert stage1.metadata["rnon"]["tag"] == "RNON stage 1"
    assert "img repaired (RNON stage 1)" in widget._status.value


def test_before_after_button_and_key(viewer_widget, run_to_end):
    viewer, widget = viewer_widget
    src = viewer.add_image(np.full((32, 32), 100, np.uint8), name="img")
    widget._image.value = src
    assert widget.toggle_before_after() is None  # nothing to compare yet
    assert "Nothing to compare" in widget._status.value
    widget.new_mask().data[4:8, 4:8] = 1
    widget._method.value = "Telea (OpenCV)"
    run_to_end(widget)
    result = viewer.layers["img repaired (telea)"]
    assert result.visible and src.visible

    widget._compare_btn.clicked.emit()  # the button: before
    assert not result.visible and src.visible
    assert "Before" in widget._status.value
    widget._compare_btn.clicked.emit()  # after
    assert result.visible

    # the key binding of the viewer calls the same toggle
    assert COMPARE_KEY == "Shift-B"
    binding = viewer.keymap[KeyBinding.from_str("Shift+B")]
    binding(viewer)
    assert not result.visible
    binding(viewer)
    assert result.visible


def test_progress_planes_time_left_in_the_widget(viewer_widget, wait_idle):
    viewer, widget = viewer_widget
    stack = viewer.add_image(np.ones((3, 32, 32), np.uint16), name="stack")
    widget._image.value = stack
    widget.new_mask().data[:, 4:8, 4:8] = 1
    widget._planes.value = ALL_PLANES
    fake_rnon(widget, Fake(tiles=20, delay=0.03))
    seen: list[str] = []
    bars: list[int] = []

    def record(done, total):  # connected after the widget's own slot: runs after it
        seen.append(widget._status.value)
        bars.append(widget._bar.value)

    widget._relay.progress.connect(record)
    assert widget.run() is not None
    assert widget._cancel_btn.enabled
    wait_idle(widget, TIMEOUT_MS)
    pattern = re.compile(r"Repair: (\d+)%, plane (\d) of 3")
    found = [m for s in seen if (m := pattern.match(s))]
    assert {m.group(2) for m in found} == {"1", "2", "3"}, seen
    percents = [int(m.group(1)) for m in found]
    assert percents == sorted(percents) and percents[-1] >= 95
    assert any(re.search(r"about \d+ s left", s) for s in seen), seen
    assert bars == sorted(bars) and widget._bar.value == 1000
    assert "3 plane(s)" in widget._status.value


def test_a_progress_event_delivered_after_the_result_does_not_hide_it(viewer_widget, wait_idle):
    """CI failure of 2026-12-02: the last progress event, handled late, overwrote the result.

    napari's progress bar processes Qt events when it moves, so a progress event handled
    after the worker has already returned delivers the result inside the progress slot;
    the progress text must not then replace the result's status line.
    """
    viewer, widget = viewer_widget
    image = viewer.add_image(np.full((24, 24), 50, np.uint8), name="img")
    widget._image.value = image
    widget.new_mask().data[4:8, 4:8] = 1
    fake_rnon(widget, Fake(tiles=1, delay=0.3))  # time to connect hold_finished
    from qtpy.QtCore import Qt

    returned = threading.Event()

    def hold_finished(result):  # in the worker thread, after the result was queued
        returned.set()
        time.sleep(0.5)  # "finished" comes this much later

    worker = widget.run()
    assert worker is not None
    worker.returned.connect(hold_finished, type=Qt.ConnectionType.DirectConnection)
    # The GUI thread is busy until the worker has queued its progress and its result.
    assert returned.wait(30)
    wait_idle(widget, TIMEOUT_MS)
    assert "'img repaired (RNON)'" in widget._status.value, widget._status.value
    assert widget._bar.value == 1000


def test_errors_before_a_run_show_in_the_status_line(viewer_widget, notes):
    viewer, widget = viewer_widget
    widget._method.value = "Telea (OpenCV)"
    assert widget.run() is None
    assert widget._status.value == notes[-1] == "Choose the image layer to repair (Image)."
    src = viewer.add_image(np.zeros((16, 16), np.uint8), name="img")
    widget._image.value = src
    assert widget.run() is None
    assert widget._status.value == notes[-1] and widget._status.value.startswith("No mask")
    widget.new_mask()
    assert widget.run() is None
    assert "no painted pixels" in widget._status.value


def test_cancel_from_the_widget_writes_nothing(viewer_widget, qtbot, wait_idle):
    viewer, widget = viewer_widget
    src = viewer.add_image(np.ones((32, 32), np.uint8), name="img")
    widget._image.value = src
    widget.new_mask().data[1:3, 1:3] = 1
    fake = Fake(tiles=500, delay=0.02)
    fake_rnon(widget, fake)
    widget.run()
    qtbot.waitUntil(fake.started.is_set, timeout=TIMEOUT_MS)
    widget._cancel_btn.clicked.emit()
    wait_idle(widget, TIMEOUT_MS)
    assert widget._status.value == "Cancelled."
    assert [ly.name for ly in viewer.layers] == ["img", "img repair mask"]


# --------------------------------------------------------------------------- mask tools


@pytest.fixture
def dead_stack(viewer_widget):
    """A uint16 stack: 65535 at (5, 5) in every plane and at (9, 9) in plane 1 only."""
    viewer, widget = viewer_widget
    rng = np.random.default_rng(4)
    data = (1000 + rng.normal(0, 5, (3, 32, 32))).astype(np.uint16)
    data[:, 5, 5] = 65535
    data[1, 9, 9] = 65535
    stack = viewer.add_image(data, name="stack")
    widget._image.value = stack
    mask = widget.new_mask()
    assert mask.data.shape == (3, 32, 32)
    return viewer, widget, data, mask


def test_mask_from_value_current_plane_then_all_planes_and_undo(dead_stack):
    viewer, widget, data, mask = dead_stack
    tools = widget.mask_tools
    viewer.dims.set_current_step(0, 0)
    assert tools.add_value("65535") == 1
    assert list(zip(*np.nonzero(mask.data), strict=True)) == [(0, 5, 5)]
    widget._planes.value = ALL_PLANES
    assert tools.add_value("65535") == 3
    np.testing.assert_array_equal(mask.data != 0, data == 65535)
    mask.undo()  # one click, one undo step
    assert list(zip(*np.nonzero(mask.data), strict=True)) == [(0, 5, 5)]
    mask.undo()
    assert not mask.data.any()
    assert tools.add_value("oops") is None
    assert "not understood" in widget._status.value and not mask.data.any()


def test_hot_pixels_across_planes_grow_shrink_and_brush(dead_stack):
    viewer, widget, data, mask = dead_stack
    tools = widget.mask_tools
    widget._planes.value = ALL_PLANES
    tools._across.value = True  # only the defect that is there in every plane
    assert tools.add_hot_pixels() == 3
    np.testing.assert_array_equal(np.nonzero(mask.data), ([0, 1, 2], [5, 5, 5], [5, 5, 5]))
    tools._across.value = False
    assert tools.add_hot_pixels() == 1  # the single-plane one too
    assert mask.data[1, 9, 9] == 1

    before = mask.data.copy()
    assert tools.grow(1) == 4 * 4  # a cross around each of the four pixels
    assert mask.data[0, 4, 5] and mask.data[0, 5, 6] and not mask.data[0, 4, 4]
    assert tools.grow(-1) == 16
    np.testing.assert_array_equal(mask.data, before)
    mask.undo()
    assert (mask.data != 0).sum() == 20
    mask.undo()
    np.testing.assert_array_equal(mask.data, before)

    # the brush: thin by default, and the tools' Brush field sets the mask's brush
    assert mask.brush_size == 3 and tools._brush.value == 3
    tools._brush.value = 7
    assert mask.brush_size == 7
    mask.brush_size = 5  # "[" / "]" or the layer controls
    assert tools._brush.value == 5


def test_a_chosen_mask_gets_the_thin_brush(viewer_widget):
    viewer, widget = viewer_widget
    viewer.open_sample("napari-rnon", "damaged_photo")
    mask = viewer.layers["damaged photo repair mask"]
    assert widget._mask.value is mask
    assert mask.brush_size == 3  # napari's default is 10: too wide for thin scratches


def test_mask_tools_refuse_a_lazy_mask(viewer_widget):
    import dask.array as da

    viewer, widget = viewer_widget
    src = viewer.add_image(np.zeros((16, 16), np.uint8), name="img")
    lazy = viewer.add_labels(da.zeros((16, 16), dtype=np.uint8), name="lazy mask")
    widget._image.value, widget._mask.value = src, lazy
    assert widget.mask_tools.grow(1) is None
    assert "not held in memory" in widget._status.value


# --------------------------------------------------------------------------- layout


def test_one_weights_chooser_and_stage2_info(viewer_widget, tmp_path):
    from rnon_engine import create_model, save_weights

    viewer, widget = viewer_widget
    assert not hasattr(widget, "_saved")
    texts = [widget._weights.native.itemText(i) for i in range(widget._weights.native.count())]
    assert texts[0] == "packaged model" and texts[-1] == "choose a file..."
    assert widget._method.value == AUTO_METHOD  # issue 15: auto is the default
    assert widget._stage2_info.native.isHidden()
    widget._method.value = RNON_METHODS[0]
    assert widget._stage2_info.value == "Stage 2: the packaged optimise model."
    stage1 = save_weights(
        create_model("rnon-repair", width=0.125, depth=4), tmp_path / "cells.safetensors"
    )
    widget.set_weights(stage1)
    assert widget._weights.value == str(stage1)
    assert widget._stage2_info.value.startswith("Stage 2: none. cells.safetensors holds stage 1")
    widget._stage2.value = tmp_path / "o.safetensors"
    assert widget._stage2_info.value == "Stage 2: o.safetensors (Advanced settings)."
    widget._method.value = RNON_METHODS[1]
    assert widget._stage2_info.native.isHidden()


def test_no_private_napari_attributes(recwarn, viewer_widget, run_to_end):
    viewer, widget = viewer_widget
    src = viewer.add_image(np.ones((16, 16), np.uint8), name="img")
    widget._image.value = src
    widget.new_mask().data[2:4, 2:4] = 1
    widget._method.value = "Telea (OpenCV)"
    widget._outline.value = True
    run_to_end(widget)
    run_to_end(widget)  # finds its result and outline layers again
    assert not [w for w in recwarn if "_type_string" in str(w.message)]
    for path in (ROOT / "src" / "napari_rnon").glob("*.py"):
        assert "_type_string" not in path.read_text(), path


def test_docs_name_the_menu_entries_as_napari_shows_them(make_napari_viewer):
    from napari._app_model import get_app_model

    make_napari_viewer()
    menus = get_app_model().menus
    shown = set()
    for menu_id in (
        "napari/file",
        "napari/layers",
        "napari/plugins",
        "napari/plugins/napari-rnon",
        "napari/file/samples",
        "napari/file/samples/napari-rnon",
        "napari/layers/annotate",
    ):
        for item in menus.get_menu(menu_id):
            title = getattr(getattr(item, "command", None), "title", None)
            shown.add(title or getattr(item, "title", None))
    docs = (ROOT / "docs" / "napari.md").read_text()
    entries = [
        "Plugins > RNON Inpainting > Inpaint (RNON Inpainting)",
        "Plugins > RNON Inpainting > Fine-tune (RNON Inpainting)",
        "File > Open Sample > RNON Inpainting > Damaged photo (RGB) + repair mask",
        "Layers > Annotate > Add repair mask (RNON Inpainting)",
    ]
    for entry in entries:
        assert f"**{entry}**" in docs, entry
        for part in entry.split(" > ")[1:]:
            assert part in shown, (part, sorted(s for s in shown if s))


# --------------------------------------------------------------------------- reader


def _ome_with_units(path: Path) -> np.ndarray:
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_image

    img = np.arange(2 * 16 * 16, dtype=np.uint16).reshape(2, 16, 16)
    write_image(
        img,
        zarr.open_group(str(path), mode="w", zarr_format=3),
        axes="zyx",
        axes_units={"z": "micrometer", "y": "nanometer", "x": "nanometer"},
        fmt=FormatV05(),
        scale_factors=[],
    )
    return img


def test_reader_keeps_axis_units(make_napari_viewer, tmp_path):
    src = tmp_path / "units.zarr"
    _ome_with_units(src)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(src), plugin="napari-rnon")
    assert [str(u) for u in layer.units] == ["micrometer", "nanometer", "nanometer"]
    widget = InpaintWidget(viewer)
    mask = widget.new_mask()
    assert [str(u) for u in mask.units] == ["micrometer", "nanometer", "nanometer"]


def test_reading_a_zarr_imports_no_widget_toolkit(tmp_path):
    src = tmp_path / "light.zarr"
    img = _ome_with_units(src)
    code = (
        "import sys\n"
        "from napari_rnon._reader import napari_get_reader\n"
        f"layers = napari_get_reader({str(src)!r})({str(src)!r})\n"
        "import numpy as np\n"
        "print(np.asarray(layers[0][0]).sum())\n"
        "print(sorted(m for m in ('magicgui', 'torch', 'qtpy', 'napari_rnon._widget') "
        "if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": f"{ROOT / 'src'}", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    total, modules = proc.stdout.strip().splitlines()
    assert int(total) == int(img.sum())
    assert modules == "[]"


def test_importing_the_widgets_imports_no_torch():
    """napari imports the widget module when the user opens it: torch waits for a run."""
    code = (
        "import sys\n"
        "import napari_rnon._widget, napari_rnon._finetune\n"
        "mods = ('torch', 'rnon_engine.inference.inpainter')\n"
        "print(sorted(m for m in mods if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": f"{ROOT / 'src'}", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_widget_opens_before_torch_has_listed_the_devices(
    make_napari_viewer, qtbot, monkeypatch
):
    """torch takes seconds to import: the device list must not hold the widget up."""
    import napari_rnon._widget as widget_module

    release = threading.Event()

    def slow_devices():
        release.wait(30)
        return ["auto", "cpu", "cuda:0"]

    monkeypatch.setattr(widget_module, "available_devices", slow_devices)
    viewer = make_napari_viewer()
    widget = InpaintWidget(viewer)  # returns while the probe still waits
    assert not widget.devices_ready.is_set()
    assert list(widget._device.choices) == ["auto", "cpu"]
    widget._device.value = "cpu"
    release.set()
    qtbot.waitUntil(widget.devices_ready.is_set, timeout=TIMEOUT_MS)
    assert list(widget._device.choices) == ["auto", "cpu", "cuda:0"]
    assert widget._device.value == "cpu"  # the user's choice is kept


def test_ome_zarr_channels_one_repair(make_napari_viewer, wait_idle, tmp_path):
    """Channel layers from the OME-Zarr reader (dask, a ``c`` axis) are one group."""
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_image

    rng = np.random.default_rng(5)
    img = rng.integers(0, 4000, (2, 3, 24, 24), dtype=np.uint16)
    src = tmp_path / "cells.zarr"
    write_image(
        img,
        zarr.open_group(str(src), mode="w", zarr_format=3),
        axes="czyx",
        fmt=FormatV05(),
        scale_factors=[],
    )
    viewer = make_napari_viewer()
    layers = viewer.open(str(src), plugin="napari-rnon")
    assert [ly.name for ly in layers] == ["cells c0", "cells c1"]
    widget = InpaintWidget(viewer)
    widget._image.value = layers[0]
    assert widget._channels.text == "All 2 channels (one mask)"
    mask = widget.new_mask()
    mask.data[:, 5:9, 5:9] = 1
    widget._method.value = "Telea (OpenCV)"
    widget._planes.value = ALL_PLANES
    assert widget.run() is not None
    wait_idle(widget, TIMEOUT_MS)
    m = mask.data != 0
    for c in range(2):
        out = np.asarray(viewer.layers[f"cells c{c} repaired (telea)"].data)
        np.testing.assert_array_equal(out[~m], img[c][~m])
        assert (out[m] != img[c][m]).any()
