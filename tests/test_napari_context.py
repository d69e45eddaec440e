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


def test_auto_with_neighbouring_planes_uses_the_stack_model(
    make_napari_viewer, wait_idle, tmp_path, monkeypatch
):
    import torch

    import rnon_engine.inference.stack_model as stack_model
    from napari_rnon._layers import META_KEY
    from napari_rnon._methods import AUTO_METHOD
    from rnon_engine import create_model, save_weights
    from rnon_engine.nn.weights import file_sha256

    torch.manual_seed(0)  # a random stack network whose residual is a constant +0.01
    net = create_model("rnon-repair-stack", width=8)
    with torch.no_grad():
        net.head.bias.fill_(0.01)
    weights = save_weights(net, tmp_path / "s.safetensors")
    monkeypatch.setattr(stack_model, "packaged_stack_path", lambda: weights)
    viewer = make_napari_viewer()
    widget = InpaintWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Inpaint")
    yy, xx = np.mgrid[:48, :64]
    frame = (30000 + 20000 * np.sin(yy / 5.0) * np.cos(xx / 7.0)).astype(np.uint16)
    stack = viewer.add_image(np.repeat(frame[None], 3, axis=0), name="movie")
    m = np.zeros((3, 48, 64), np.uint8)
    m[1, 10:30, 20:40] = 1  # a transient defect in plane 1
    mask = viewer.add_labels(m, name="movie repair mask")
    widget._image.value, widget._mask.value = stack, mask
    widget._method.value = AUTO_METHOD
    widget._planes.value = ALL_PLANES
    widget._neighbours.value = True
    widget._context_planes.value = 1
    widget.run("repair")
    wait_idle(widget, TIMEOUT_MS)
    layer = next(la for la in viewer.layers if la.name.startswith("movie repaired (auto"))
    result = layer.data
    np.testing.assert_array_equal(result[m == 0], stack.data[m == 0])
    known = frame.astype(int)  # values are mapped to [0, 1] by the known pixels' range
    step = 0.01 * (known.max() - known.min())
    expect = np.minimum(known[10:30, 20:40] + step, known.max())  # clipped to the range
    err = result[1, 10:30, 20:40].astype(int) - expect
    assert np.abs(err).max() <= 2  # equal neighbours, plus the network's +0.01
    assert layer.metadata[META_KEY]["stack_weights_sha256"] == file_sha256(weights)
