"""'Use neighbouring planes' in the Inpaint widget (issue 17), in a real viewer (Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_rnon._widget import ALL_PLANES, InpaintWidget  # noqa: E402

pytestmark = pytest.mark.gui
TIMEOUT_MS = 60_000


def test_neighbouring_planes_fill_a_transient_defect(make_napari_viewer, wait_idle):
    viewer = make_napari_viewer()
    widget = InpaintWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Inpaint")
    rng = np.random.default_rng(0)
    frame = (rng.random((48, 64)) * 60000).astype(np.uint16)
    stack = viewer.add_image(np.repeat(frame[None], 5, axis=0), name="movie")
    m = np.zeros((5, 48, 64), np.uint8)
    m[2, 10:30, 20:40] = 1  # a transient defect in plane 2
    m[3, 5:9, 5:9] = 1
    m[:, 40:44, 50:54] = 1  # the same pixels in every plane: the method's 2-D fill
    mask = viewer.add_labels(m, name="movie repair mask")
    widget._image.value, widget._mask.value = stack, mask
    assert not widget._neighbours.native.isHidden()  # stacks show the option
    widget._method.value = "Biharmonic (scikit-image)"
    widget._planes.value = ALL_PLANES
    widget._neighbours.value = True
    widget._context_planes.value = 1
    widget.run("repair")
    wait_idle(widget, TIMEOUT_MS)
    result = viewer.layers["movie repaired (biharmonic, neighbours ±1)"].data
    assert result.dtype == np.uint16
    np.testing.assert_array_equal(result[m == 0], stack.data[m == 0])
    np.testing.assert_array_equal(result[2, 10:30, 20:40], frame[10:30, 20:40])
    np.testing.assert_array_equal(result[3, 5:9, 5:9], frame[5:9, 5:9])
    assert (result[:, 40:44, 50:54] != stack.data[:, 40:44, 50:54]).any()

    # K larger than the stack allows is refused with a message, nothing added
    widget._context_planes.value = 5
    layers = len(viewer.layers)
    assert widget.run("repair") is None
    assert "at most 4" in widget._status.value
    assert len(viewer.layers) == layers

    # a single image hides the option
    single = viewer.add_image(frame, name="single")
    widget._image.value = single
    assert widget._neighbours.native.isHidden()
