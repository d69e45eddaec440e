"""Issue 15 in napari: Auto first and default, "Estimate error", the method label layer.

Real napari viewer under Xvfb; the Auto runs use the engine's real ``AutoInpainter`` with
its classical fallback rules (no network: fast, and the same routing code).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari.layers import Labels  # noqa: E402

from napari_rnon._widget import AUTO_METHOD, InpaintWidget, load_inpainter  # noqa: E402
from rnon_engine.inference.auto import build_auto  # noqa: E402
from rnon_engine.inference.estimate import estimate_error  # noqa: E402
from rnon_engine.inference.routing import FALLBACK_RULES, LABEL_NAMES, method_labels  # noqa: E402

pytestmark = pytest.mark.gui
TIMEOUT_MS = 60_000


@pytest.fixture
def viewer_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = InpaintWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Inpaint")
    return viewer, widget


def classical_auto(widget):
    """Auto runs use the real AutoInpainter with the classical rules; the rest stay real."""
    built = []

    def factory(settings):
        if settings.name_or_path == "auto":
            built.append(build_auto(rules=dict(FALLBACK_RULES), tile_size=settings.tile_size))
            return built[-1]
        return load_inpainter(settings)

    widget.inpainter_factory = factory
    return built


@pytest.fixture
def run_to_end(wait_idle):
    def start_and_wait(widget, step="repair"):
        worker = widget.run(step)
        assert worker is not None, widget._status.value
        wait_idle(widget, TIMEOUT_MS)
        return worker

    return start_and_wait


def picture(shape=(64, 64), seed=0):
    """A smooth uint8 picture with some noise (so the repairs differ from method to method)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    base = 100 + 60 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    return np.clip(base + rng.normal(0, 4, shape), 0, 255).astype(np.uint8)


def damage(shape=(64, 64)):
    """A dead pixel, a 1-px scratch and a 12x12 blob: three kinds, several methods."""
    m = np.zeros(shape, np.uint8)
    m[5, 5] = 1
    m[20, 10:40] = 1
    m[40:52, 40:52] = 1
    return m


def test_auto_is_the_first_method_and_the_default(viewer_widget):
    viewer, widget = viewer_widget
    assert list(widget._method.choices)[0] == AUTO_METHOD
    assert widget._method.value == AUTO_METHOD
    assert widget.settings().name_or_path == "auto"
    assert widget._estimate.value is False
    assert not widget._show_methods.native.isHidden()
    assert not widget._optimise_btn.enabled  # stage 2 alone is the RNON methods' step
    widget._method.value = "Telea (OpenCV)"
    assert widget._show_methods.native.isHidden()
    widget._method.value = AUTO_METHOD
    assert not widget._show_methods.native.isHidden()


def test_auto_run_names_its_result_counts_methods_and_shows_the_label_layer(
    viewer_widget, run_to_end
):
    viewer, widget = viewer_widget
    built = classical_auto(widget)
    image = picture()
    src = viewer.add_image(image.copy(), name="img")
    widget._image.value = src
    mask_layer = widget.new_mask()
    mask_layer.data[:] = damage()
    mask = mask_layer.data.copy()

    assert widget.show_methods() is None
    assert "No Auto run to show yet" in widget._status.value

    run_to_end(widget)
    result = viewer.layers["img repaired (auto)"]
    np.testing.assert_array_equal(result.data[mask == 0], image[mask == 0])
    assert not np.array_equal(result.data[mask != 0], image[mask != 0])
    meta = result.metadata["rnon"]
    labels = method_labels(mask, FALLBACK_RULES)
    expected = {
        LABEL_NAMES[c]: int(n) for c, n in enumerate(np.bincount(labels.ravel())) if c and n
    }
    assert len(expected) >= 2  # the picture really mixes methods
    assert meta["pixels_per_method"] == expected
    assert sum(expected.values()) == int(np.count_nonzero(mask))
    assert meta["pixels_per_method"] == built[0].last_counts
    assert meta["method"] == "auto" and meta["rules"] == dict(FALLBACK_RULES)
    assert "error_estimate" not in meta  # "Estimate error" is off
    assert "Filled by biharmonic 31 px, navier-stokes 144 px." in widget._status.value
    assert "stimated error" not in widget._status.value
    assert "img methods (auto)" not in viewer.layers  # only on request

    widget._show_methods.value = True
    shown = viewer.layers["img methods (auto)"]
    assert isinstance(shown, Labels)
    np.testing.assert_array_equal(np.asarray(shown.data), labels)
    assert set(shown.features["method"]) >= {"biharmonic", "navier-stokes"}
    assert viewer.layers.selection.active is mask_layer  # painting can go on
    assert list(viewer.layers)[-1] is shown

    widget._show_methods.value = False
    assert not shown.visible

    # a new mask, run again with the box ticked: the layer follows the last run
    mask_layer.data[:] = 0
    mask_layer.data[30, 30] = 1
    mask_layer.refresh()
    widget._show_methods.value = True
    run_to_end(widget)
    assert shown.visible
    np.testing.assert_array_equal(np.asarray(shown.data) != 0, mask_layer.data != 0)
    assert result.metadata["rnon"]["pixels_per_method"] == {"biharmonic": 1}


def test_estimate_error_shows_in_status_and_metadata(viewer_widget, run_to_end):
    viewer, widget = viewer_widget
    built = classical_auto(widget)
    image = picture()
    src = viewer.add_image(image.copy(), name="img")
    widget._image.value = src
    widget.new_mask().data[:] = damage()
    widget._estimate.value = True
    run_to_end(widget)
    meta = viewer.layers["img repaired (auto)"].metadata["rnon"]
    est = meta["error_estimate"]
    truth = estimate_error(built[0], image, damage(), seed=0, channel_axis=None)
    assert est["rmse"] == pytest.approx(truth, rel=1e-12)
    assert 0 < est["rmse"] < 255
    assert est["planes"] == {"the image": pytest.approx(truth, rel=1e-12)}
    status = widget._status.value.lower()
    assert f"estimated error (rmse) {est['rmse']:.3g} in image values" in status
    # the counts are the run's, not those of the estimate's own repairs
    assert sum(meta["pixels_per_method"].values()) == int(np.count_nonzero(damage()))


def test_estimate_error_of_a_classical_method_over_planes(viewer_widget, run_to_end):
    viewer, widget = viewer_widget
    stack = np.stack([picture(seed=1), picture(seed=2)])
    mask = np.stack([damage(), np.zeros((64, 64), np.uint8)])
    mask[1, 10:14, 50:54] = 1
    src = viewer.add_image(stack.copy(), name="stack")
    widget._image.value = src
    layer = widget.new_mask()
    layer.data[:] = mask
    widget._method.value = "Telea (OpenCV)"
    widget._planes.value = "all planes"
    widget._estimate.value = True
    run_to_end(widget)
    meta = viewer.layers["stack repaired (telea)"].metadata["rnon"]
    est = meta["error_estimate"]
    assert "pixels_per_method" not in meta
    inp = load_inpainter(widget.settings())
    per_plane = [estimate_error(inp, stack[i], mask[i], seed=0, channel_axis=None) for i in (0, 1)]
    assert est["planes"] == {
        "plane (0,)": pytest.approx(per_plane[0]),
        "plane (1,)": pytest.approx(per_plane[1]),
    }
    holes = [int(np.count_nonzero(mask[i])) for i in (0, 1)]
    pooled = math.sqrt(sum(r * r * n for r, n in zip(per_plane, holes, strict=True)) / sum(holes))
    assert est["rmse"] == pytest.approx(pooled)
    assert "Estimated error (RMSE)" in widget._status.value  # alone: its own sentence


def test_method_layer_of_a_stack_routes_only_the_planes_of_the_run(viewer_widget, run_to_end):
    viewer, widget = viewer_widget
    classical_auto(widget)
    stack = np.stack([picture(seed=1), picture(seed=2), picture(seed=3)])
    src = viewer.add_image(stack.copy(), name="stack")
    widget._image.value = src
    layer = widget.new_mask()
    layer.data[:] = damage()[None]
    viewer.dims.set_point(0, 1)
    run_to_end(widget)  # the current plane only
    widget._show_methods.value = True
    shown = np.asarray(viewer.layers["stack methods (auto)"].data)
    assert shown.shape == stack.shape
    np.testing.assert_array_equal(shown[1], method_labels(damage(), FALLBACK_RULES))
    assert not shown[0].any() and not shown[2].any()


class StageRecorder:
    """A stand-in RNON engine that records the stages it is asked for (masked -> 7)."""

    provenance = {"method": "fake"}

    def __init__(self):
        self.stages: list[str] = []

    def inpaint(self, image, mask, *, stages, channel_axis, progress=None, cancel=None):
        self.stages.append(stages)
        out = image.copy()
        out[mask != 0] = 7
        return out


def test_optimise_estimates_the_error_of_both_stages(viewer_widget, run_to_end):
    """Stage 2 alone would not repair the estimate's hidden pixels: Optimise estimates both."""
    viewer, widget = viewer_widget
    fake = StageRecorder()
    widget.inpainter_factory = lambda settings: fake
    src = viewer.add_image(picture(), name="img")
    widget._image.value = src
    widget.new_mask().data[:] = damage()
    widget._method.value = "RNON repair only"
    run_to_end(widget)
    assert fake.stages == ["repair"]
    widget._estimate.value = True
    run_to_end(widget, "optimise")
    assert fake.stages[1:] == ["optimize", "both", "both"]  # the run, then two probes
    meta = viewer.layers["img repaired (RNON stage 1 + optimise)"].metadata["rnon"]
    assert meta["error_estimate"]["rmse"] > 0
