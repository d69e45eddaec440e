"""The Inpaint dock widget in a real napari viewer (run under Xvfb)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import dask.array as da  # noqa: E402
from napari.layers import Labels  # noqa: E402
from qtpy.QtCore import QTimer  # noqa: E402

from napari_rnon._commands import add_repair_mask  # noqa: E402
from napari_rnon._layers import MASK_COLOR, THIN_BRUSH  # noqa: E402
from napari_rnon._widget import ALL_PLANES, AUTO_METHOD, InpaintWidget  # noqa: E402
from rnon_engine.errors import Cancelled  # noqa: E402

pytestmark = pytest.mark.gui
TIMEOUT_MS = 60_000


@pytest.fixture
def viewer_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = InpaintWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Inpaint")
    return viewer, widget


@pytest.fixture
def run_to_end(wait_idle):
    """``run_to_end(widget, step)``: start a run, wait until it has ended; returns the worker."""

    def start_and_wait(widget, step="repair"):
        worker = widget.run(step)
        wait_idle(widget, TIMEOUT_MS)
        return worker

    return start_and_wait


class SlowFake:
    """A stand-in engine: 40 'tiles' of 25 ms, then masked pixels set to 0."""

    provenance = {"method": "fake"}

    def __init__(self, tiles=40, delay=0.025):
        self.tiles, self.delay = tiles, delay
        self.started = threading.Event()

    def inpaint(self, image, mask, *, stages, channel_axis, progress=None, cancel=None):
        self.started.set()
        for i in range(self.tiles):
            if cancel is not None and cancel():
                raise Cancelled("cancelled")
            time.sleep(self.delay)
            if progress is not None:
                progress(i + 1, self.tiles)
        out = image.copy()
        out[mask != 0] = 0
        return out


def use_fake(widget, fake):
    if widget._method.value == AUTO_METHOD:  # these runs are RNON runs (Auto is the default)
        widget._method.value = "RNON (repair + optimise)"
    widget.inpainter_factory = lambda settings: fake


@pytest.fixture
def img_with_mask(viewer_widget):
    """A 32×32 uint8 image of ones named "img", chosen, with a mask painted at [3:6, 3:6]."""
    viewer, widget = viewer_widget
    layer = viewer.add_image(np.ones((32, 32), np.uint8), name="img")
    widget._image.value = layer
    widget.new_mask().data[3:6, 3:6] = 1
    return viewer, widget, layer


@pytest.fixture
def long_run(img_with_mask, qtbot):
    """``img_with_mask`` with a long fake run (400 tiles of 20 ms) started and under way."""
    viewer, widget, layer = img_with_mask
    fake = SlowFake(tiles=400, delay=0.02)
    use_fake(widget, fake)
    widget.run()
    qtbot.waitUntil(fake.started.is_set, timeout=TIMEOUT_MS)
    return viewer, widget, layer


def test_the_first_repair_takes_the_engine_built_while_the_user_paints(
    img_with_mask, run_to_end, qtbot
):
    viewer, widget, layer = img_with_mask
    fake = SlowFake(tiles=1, delay=0)
    built: list[str] = []

    def factory(settings):
        built.append(threading.current_thread().name)
        return fake

    widget._method.value = "RNON (repair + optimise)"  # settings changed: built a bit later
    widget.inpainter_factory = factory
    qtbot.waitUntil(lambda: bool(built), timeout=TIMEOUT_MS)
    run_to_end(widget)
    assert built == ["rnon-preload"]  # in the background, once; the run did not build one
    assert fake.started.is_set()
    assert (viewer.layers[-1].data[3:6, 3:6] == 0).all()


def test_a_2d_result_array_becomes_the_new_layer_without_a_copy(img_with_mask, run_to_end):
    viewer, widget, layer = img_with_mask
    returned = []

    class Keep(SlowFake):
        def inpaint(self, image, mask, **kwargs):
            returned.append(super().inpaint(image, mask, **kwargs))
            return returned[-1]

    use_fake(widget, Keep(tiles=1, delay=0))
    run_to_end(widget)
    result = viewer.layers[-1]
    assert result is not layer and result.data is returned[0]
    assert (layer.data == 1).all()  # the source is untouched
    # The next run writes into that layer's array.
    run_to_end(widget)
    assert viewer.layers[-1] is result and result.data is returned[0]
    assert len(returned) == 2 and returned[1] is not returned[0]
    assert (result.data[3:6, 3:6] == 0).all() and (layer.data == 1).all()


def test_a_result_that_is_the_source_array_is_copied_into_the_new_layer(
    img_with_mask, run_to_end
):
    # An engine may hand back the very array it was given (nothing it would change): the
    # result layer then gets its own copy, so later runs never write into the source.
    viewer, widget, layer = img_with_mask
    given = []

    class Same(SlowFake):
        def inpaint(self, image, mask, **kwargs):
            given.append(image)
            return image

    use_fake(widget, Same(tiles=1, delay=0))
    run_to_end(widget)
    result = viewer.layers[-1]
    assert np.shares_memory(given[0], layer.data)  # the engine was given the source itself
    assert result is not layer and not np.shares_memory(result.data, layer.data)


def test_sample_new_mask_paint_and_repair(viewer_widget, run_to_end):
    viewer, widget = viewer_widget
    viewer.open_sample("napari-rnon", "damaged_photo")
    photo = viewer.layers["damaged photo"]
    assert photo.rgb and isinstance(viewer.layers["damaged photo repair mask"], Labels)
    widget._image.value = photo

    mask = widget.new_mask()
    assert mask.data.shape == photo.data.shape[:2] and mask.data.dtype == np.uint8
    assert viewer.layers.selection.active is mask and mask.mode == "paint"
    assert mask.selected_label == 1 and mask.brush_size == THIN_BRUSH
    np.testing.assert_allclose(mask.colormap.map(np.array([1]))[0], MASK_COLOR)
    assert widget._mask.value is mask
    # paint programmatically, as the brush does (with undo history)
    mask.paint((100, 200), 1)
    mask.data_setitem((np.arange(300, 320), np.full(20, 50)), 1)
    painted = mask.data != 0
    assert 20 < painted.sum() < 500

    widget._method.value = "Telea (OpenCV)"
    worker = run_to_end(widget)
    assert worker is not None
    result = viewer.layers["damaged photo repaired (telea)"]
    assert result.data.dtype == photo.data.dtype and result.rgb
    np.testing.assert_array_equal(result.data[~painted], photo.data[~painted])
    assert (result.data[painted] != photo.data[painted]).any()
    assert result.metadata["rnon"]["method"] == "telea"
    assert result.metadata["rnon"]["mask"] == mask.name
    assert tuple(result.scale) == tuple(photo.scale)

    # running again updates the same layer
    mask.paint((150, 300), 1)
    new = (mask.data != 0) & ~painted
    assert (result.data[new] == photo.data[new]).all()
    n_layers = len(viewer.layers)
    run_to_end(widget)
    assert len(viewer.layers) == n_layers
    assert viewer.layers["damaged photo repaired (telea)"] is result
    assert (result.data[new] != photo.data[new]).any()


def test_stack_all_planes_and_current_plane_keep_metadata(viewer_widget, run_to_end):
    viewer, widget = viewer_widget
    viewer.open_sample("napari-rnon", "dead_pixel_stack")
    stack = viewer.layers["dead-pixel stack"]
    mask = viewer.layers["dead-pixel stack repair mask"]
    stack.scale = (2.0, 0.5, 0.5)
    mask.scale = (0.5, 0.5)
    stack.colormap = "magma"
    assert stack.data.dtype == np.uint16 and mask.data.ndim == 2
    assert widget._image.value is stack and widget._mask.value is mask
    assert not widget._planes.native.isHidden()  # the planes choice shows for stacks
    widget._method.value = "Biharmonic (scikit-image)"

    viewer.dims.set_current_step(0, 2)
    run_to_end(widget)
    result = viewer.layers["dead-pixel stack repaired (biharmonic)"]
    m = mask.data != 0
    changed = [(result.data[z][m] != stack.data[z][m]).any() for z in range(4)]
    assert changed == [False, False, True, False]
    assert result.metadata["rnon"]["planes_repaired"] == [(2,)]
    assert tuple(result.scale) == (2.0, 0.5, 0.5) and result.colormap.name == "magma"
    assert tuple(result.contrast_limits) == tuple(stack.contrast_limits)

    widget._planes.value = ALL_PLANES
    widget._outline.value = True
    run_to_end(widget)
    assert viewer.layers["dead-pixel stack repaired (biharmonic)"] is result
    for z in range(4):
        np.testing.assert_array_equal(result.data[z][~m], stack.data[z][~m])
        assert (result.data[z][m] != stack.data[z][m]).any()
    outline = viewer.layers["dead-pixel stack repaired pixels"]
    assert outline.contour == 1 and (outline.data != 0).sum() == m.sum()


def test_dask_stack_result_is_lazy(viewer_widget, run_to_end):
    viewer, widget = viewer_widget
    rng = np.random.default_rng(1)
    data = rng.integers(100, 4000, (5, 64, 64), dtype=np.uint16)
    layer = viewer.add_image(da.from_array(data, chunks=(1, 64, 64)), name="lazy")
    labels = np.zeros((5, 64, 64), np.uint8)
    labels[3, 10:20, 30:34] = 1
    mask = viewer.add_labels(da.from_array(labels, chunks=(1, 64, 64)), name="lazy mask")
    widget._image.value, widget._mask.value = layer, mask
    widget._method.value = "Telea (OpenCV)"
    widget._planes.value = ALL_PLANES
    run_to_end(widget)
    result = viewer.layers["lazy repaired (telea)"]
    assert isinstance(result.data, da.Array)
    out = np.asarray(result.data)
    m = labels != 0
    np.testing.assert_array_equal(out[~m], data[~m])
    assert (out[m] != data[m]).any()


def test_multichannel_one_repair_for_all_channels_without_double_brightness(
    viewer_widget, run_to_end
):
    viewer, widget = viewer_widget
    rng = np.random.default_rng(2)
    data = rng.integers(0, 255, (3, 48, 48), dtype=np.uint8)
    channels = viewer.add_image(data, channel_axis=0, name=["c0", "c1", "c2"])
    other = viewer.add_image(data[0].copy(), name="other")  # same shape, not a channel
    widget._image.value = channels[1]
    assert not widget._channels.native.isHidden() and widget._channels.value
    assert widget._channels.text == "All 3 channels (one mask)"
    mask = widget.new_mask()
    assert mask.data.shape == (48, 48)
    mask.data[5:9, 5:9] = 1
    widget._method.value = "Navier-Stokes (OpenCV)"
    run_to_end(widget)
    results = [viewer.layers[f"c{i} repaired (navier-stokes)"] for i in range(3)]
    m = mask.data != 0
    for i, (src, res) in enumerate(zip(channels, results, strict=True)):
        np.testing.assert_array_equal(res.data[~m], data[i][~m])
        assert (res.data[m] != data[i][m]).any()
        assert res.colormap.name == src.colormap.name
    assert "other repaired (navier-stokes)" not in viewer.layers
    # the results sit on top in channel order; the lowest is opaque, the others add to
    # it as the sources do, so the composite is the results' and not results + sources
    assert list(viewer.layers)[-3:] == results
    assert [r.blending for r in results] == [c.blending for c in channels]
    assert results[0].blending == "translucent_no_depth" and results[0].opacity == 1
    assert {r.blending for r in results[1:]} == {"additive"}
    assert other.data.shape == (48, 48)

    # one channel alone when the box is cleared
    widget._channels.value = False
    widget._method.value = "Telea (OpenCV)"
    run_to_end(widget)
    assert "c1 repaired (telea)" in viewer.layers and "c0 repaired (telea)" not in viewer.layers


def test_rnon_weights_file_repair_then_optimise(viewer_widget, run_to_end, tmp_path):
    from rnon_engine import create_model, save_weights

    path = tmp_path / "tiny.safetensors"
    save_weights(create_model("rnon-repair", width=0.125, depth=5), path)
    viewer, widget = viewer_widget
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    layer = viewer.add_image(image, name="img", rgb=True)
    widget._image.value = layer
    mask = widget.new_mask()
    mask.data[20:30, 20:30] = 1
    widget._method.value = "RNON repair only"
    widget.set_weights(path)
    run_to_end(widget)
    result = viewer.layers["img repaired (RNON tiny stage 1)"]
    meta = result.metadata["rnon"]
    assert meta["method"] == "rnon" and meta["weights"]["repair"] == str(path)
    assert len(meta["sha256"]["repair"]) == 64
    inside = mask.data != 0
    np.testing.assert_array_equal(result.data[~inside], image[~inside])
    assert (result.data[inside] != image[inside]).any()

    # Optimise is a separate step: it runs stage 2 alone ("optimize", never "both", which
    # would run stage 1 again) on the stage-1 result and names its own layer; the fake
    # engine records the stages it was asked for.
    fake = SlowFake(tiles=1, delay=0)
    calls = []
    fake.inpaint = (lambda f: lambda img, m, **kw: calls.append(kw["stages"]) or f(img, m, **kw))(
        fake.inpaint
    )
    use_fake(widget, fake)
    run_to_end(widget, "optimise")
    assert calls == ["optimize"]
    optimised = viewer.layers["img repaired (RNON tiny stage 1 + optimise)"]
    assert optimised.metadata["rnon"]["step"] == "optimise"
    assert optimised.metadata["rnon"]["input"] == result.name


def test_viewer_stays_responsive_and_progress_moves(img_with_mask, wait_idle):
    viewer, widget, _ = img_with_mask
    use_fake(widget, SlowFake(tiles=40, delay=0.025))
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(widget._worker is not None))
    timer.start(10)
    worker = widget.run()
    assert widget._cancel_btn.enabled and not widget._repair_btn.enabled
    pbar = widget._pbar
    wait_idle(widget, TIMEOUT_MS)
    timer.stop()
    # the GUI thread ran its event loop many times while the worker was busy
    assert sum(ticks) >= 5, ticks
    assert worker is not None and pbar.n == pbar.total == 40
    assert "img repaired (RNON)" in viewer.layers and not widget._cancel_btn.enabled


def test_cancel_changes_no_layer(notes, long_run, wait_idle):
    viewer, widget, layer = long_run
    widget._cancel_btn.clicked.emit()
    wait_idle(widget, TIMEOUT_MS)
    assert [ly.name for ly in viewer.layers] == ["img", "img repair mask"]
    assert any("cancelled" in n for n in notes)
    assert (layer.data == 1).all() and widget._repair_btn.enabled


def test_layer_removed_during_run(notes, long_run, wait_idle):
    viewer, widget, layer = long_run
    viewer.layers.remove(layer)
    wait_idle(widget, TIMEOUT_MS)
    assert [ly.name for ly in viewer.layers] == ["img repair mask"]
    assert any("was removed during the run" in n for n in notes)
    assert widget._image.value is None


def test_error_paths_notify_and_change_nothing(viewer_widget, wait_idle, notes, tmp_path):
    viewer, widget = viewer_widget
    image = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)
    layer = viewer.add_image(image, name="img")
    widget._image.value = layer
    widget._method.value = "Telea (OpenCV)"

    assert widget.run() is None  # no mask chosen
    assert "No mask" in notes[-1]

    mask = widget.new_mask()
    assert widget.run() is None  # nothing painted
    assert "no painted pixels" in notes[-1]

    wrong = viewer.add_labels(np.ones((16, 32), np.uint8), name="wrong")
    widget._mask.value = wrong
    assert widget.run() is None  # shape mismatch
    assert "(16, 32)" in notes[-1] and "(32, 32)" in notes[-1]

    widget._mask.value = mask
    mask.data[4:8, 4:8] = 1
    widget._method.value = "RNON repair only"
    widget.set_weights(tmp_path / "missing.safetensors")
    assert widget.run() is None  # missing weights file
    assert "not found" in notes[-1]

    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"not a safetensors file")
    widget.set_weights(bad)
    assert widget.run() is not None  # the engine refuses it in the worker
    wait_idle(widget, TIMEOUT_MS)
    assert "corrupt" in notes[-1] or "safetensors" in notes[-1]

    widget._image.value = None
    assert widget.run() is None
    assert "Choose the image" in notes[-1]
    widget._image.value = layer
    assert widget.run("optimise") is None  # nothing repaired yet
    assert "Run 'Repair' with 'RNON repair only' first" in notes[-1]

    assert [ly.name for ly in viewer.layers] == ["img", "img repair mask", "wrong"]
    np.testing.assert_array_equal(layer.data, image)


def test_add_repair_mask_command_and_menu(make_napari_viewer, notes):
    from napari._app_model import get_app_model

    viewer = make_napari_viewer()
    assert add_repair_mask(viewer) is None
    assert "Select an image layer" in notes[-1]
    img = viewer.add_image(np.zeros((3, 40, 50), np.float32), name="vol")
    viewer.layers.selection.active = img
    get_app_model().commands.execute_command("napari-rnon.add_repair_mask").result()
    mask = viewer.layers["vol repair mask"]
    assert mask.data.shape == (3, 40, 50) and mask.mode == "paint"
    menu = get_app_model().menus.get_menu("napari/layers/annotate")
    assert "napari-rnon.add_repair_mask" in [item.command.id for item in menu]
