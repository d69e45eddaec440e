import numpy as np
import pytest

from rnon_engine import InputError
from rnon_engine.inference.classical import CLASSICAL_METHODS, fill
from rnon_engine.inference.inpainter import Inpainter
from rnon_engine.inference.tiling import plan_tiles


def smooth(h, w):
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    return 0.2 + 0.6 * (0.5 + 0.5 * np.sin(2.5 * x + 0.5) * np.cos(1.5 * y))


@pytest.mark.parametrize("method", CLASSICAL_METHODS)
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32", "float64"])
def test_fills_smooth_image_close_to_truth(method, dtype):
    truth = smooth(96, 128)
    if dtype == "uint8":
        img = np.rint(truth * 255).astype(np.uint8)
    elif dtype == "uint16":
        img = np.rint(100 + truth * 3000).astype(np.uint16)
    else:
        img = (truth * 7.5 - 2).astype(dtype)
    mask = np.zeros(truth.shape, bool)
    mask[40:50, 30:45] = True
    mask[70:73, 80:120] = True
    out = Inpainter.from_pretrained(method).inpaint(img, mask)
    assert out.dtype == img.dtype
    assert np.array_equal(out[~mask], img[~mask])
    span = float(img.max()) - float(img.min())
    err = np.abs(out[mask].astype(float) - img[mask].astype(float)).mean() / span
    assert err < 0.02, err  # mean error under 2 % of the image's range


@pytest.mark.parametrize("method", CLASSICAL_METHODS)
def test_rgb_and_leading_axes(method):
    img = np.stack([smooth(40, 50)] * 3, axis=-1)
    img = np.stack([img, img[::-1]])  # T, Y, X, C
    mask = np.zeros((40, 50), bool)
    mask[10:15, 10:20] = True
    out = Inpainter.from_pretrained(method).inpaint(
        (img * 255).astype(np.uint8), mask, channel_axis=-1
    )
    assert out.shape == img.shape
    err = np.abs(out[:, mask].astype(float) / 255 - img[:, mask]).mean()
    assert err < 0.02


def test_unknown_method():
    with pytest.raises(InputError, match="unknown method 'magic'"):
        Inpainter.from_pretrained("magic")
    with pytest.raises(InputError, match="unknown method 'magic'"):
        Inpainter(method="magic")


@pytest.mark.parametrize("method", CLASSICAL_METHODS)
def test_small_windows_fill_like_the_whole_plane(method):
    """Each hole's own window (hole + CONTEXT px) gives the whole-plane fill (exactly for
    the OpenCV methods)."""
    rng = np.random.default_rng(1)
    truth = np.stack([smooth(240, 320)[:, ::-1] ** (c + 1) for c in range(3)], axis=-1)
    img = np.rint(truth * 255 + rng.normal(0, 8, truth.shape)).clip(0, 255).astype(np.uint8)
    mask = np.zeros((240, 320), bool)
    for _ in range(15):
        y, x, r = rng.integers(0, 240), rng.integers(0, 320), rng.integers(2, 8)
        mask[max(0, y - r) : y + r, max(0, x - r) : x + r] = True
    inp = Inpainter(method=method)
    windows = plan_tiles(mask, 512, inp.margin, window_cost=inp.window_cost).windows
    assert len(windows) > 4  # several small windows, not one over the plane
    assert sum(a * b for a, b in (w.shape for w in windows)) < mask.size / 2
    out = inp.inpaint(img, mask)
    whole = fill(method, img.astype(np.float32) / 255, mask)
    ref = np.where(mask[..., None], np.rint(np.clip(whole, 0, 1) * 255), img)
    diff = np.abs(out.astype(int) - ref)
    if method == "biharmonic":
        # skimage clips a fill to the range of the known pixels of its window: a few
        # overshooting pixels (noisy image) are clipped to a smaller window's range
        assert (diff > 0).sum() <= 0.005 * 3 * mask.sum() and diff.max() <= 10
    else:
        assert diff.max() == 0
