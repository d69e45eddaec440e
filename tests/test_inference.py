import dataclasses
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import rnon_engine
from rnon_engine import Cancelled, InputError, WeightsError, create_model, save_weights
from rnon_engine.inference.inpainter import Inpainter, list_methods

torch.manual_seed(0)
_REPAIR = create_model("rnon-repair", width=0.125, depth=5)
_OPT = create_model("rnon-optimize", width=0.125, blocks=2)
_NET = Inpainter(_REPAIR, _OPT, device="cpu", tile_size=64)


class Counting(nn.Module):
    """Wraps a repair model; records the shape of every forward call."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.multiple = getattr(inner, "multiple", 1)
        self.calls = []

    def forward(self, image, mask):
        self.calls.append(tuple(image.shape))
        return self.inner(image, mask)


class LocalFill(nn.Module):
    """A deterministic inpainter with a 9x9 receptive field: normalised box filter."""

    multiple = 1

    def forward(self, image, mask):
        num = nn.functional.avg_pool2d(image * mask, 9, 1, 4, count_include_pad=False)
        den = nn.functional.avg_pool2d(mask.expand_as(image), 9, 1, 4, count_include_pad=False)
        return torch.where(den > 0, num / den.clamp_min(1e-8), torch.full_like(num, 0.5))


def smooth(h, w, c=None, seed=0):
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(1, 3, 2)
    base = 0.5 + 0.25 * np.sin(a * 3 * x + 1) * np.cos(b * 2 * y)
    if c is None:
        return base
    return np.stack([np.roll(base, 3 * k, axis=1) for k in range(c)], axis=-1)


def rand_mask(shape, frac=0.1, seed=0):
    m = np.random.default_rng(seed).random(shape) < frac
    m.flat[0] = False
    return m


# ------------------------------------------------------------------ invariants
@st.composite
def image_and_mask(draw):
    dtype = draw(
        st.sampled_from(["uint8", "uint16", "int16", "uint64", "int64", "float32", "float64"])
    )
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    c = draw(st.sampled_from([None, 1, 3, 4, 5]))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    shape = (h, w) if c is None else (h, w, c)
    if dtype.startswith("float"):
        scales = [1.0, 1e-6, 1e4, 1e30, 1e-45] + ([1e299, 1e-300] if dtype == "float64" else [])
        scale = draw(st.sampled_from(scales))
        offset = draw(st.sampled_from([0.0, 1e6]))
        img = (offset + rng.standard_normal(shape) * scale).astype(dtype)
        img.flat[0] = -0.0
    else:
        info = np.iinfo(dtype)
        img = rng.integers(info.min, int(info.max) + 1, shape, dtype=dtype)
    mask = rng.random((h, w)) < draw(st.floats(0, 1))
    mask.flat[rng.integers(0, h * w)] = False
    return img, mask


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=image_and_mask(), method=st.sampled_from(["net", "telea", "biharmonic"]))
def test_identity_outside_mask_and_dtype(data, method):
    img, mask = data
    before_img, before_mask = img.copy(), mask.copy()
    inp = _NET if method == "net" else Inpainter(method=method, tile_size=64)
    out = inp.inpaint(img, mask)
    assert out.dtype == img.dtype and out.shape == img.shape
    keep = ~mask
    # bit-identical (compare raw bytes: -0.0 and NaN payloads included)
    a = out.view(f"u{out.itemsize}")[keep]
    b = img.view(f"u{img.itemsize}")[keep]
    assert np.array_equal(a, b)
    assert np.array_equal(img, before_img) and np.array_equal(mask, before_mask)
    if img.dtype.kind == "f":
        assert np.isfinite(out).all()
    if img.dtype != np.uint8 and not (img.ndim == 3 and img.shape[2] == 4):
        # fills stay within the known pixels' range (uint8 maps 0..255 as a whole; alpha
        # under the holes is copied as it is)
        known = img[keep]
        assert known.min() <= out[mask].min(initial=known.max())
        assert out[mask].max(initial=known.min()) <= known.max()  # no wrap, no overshoot
    if img.ndim == 3 and img.shape[2] == 4:
        assert np.array_equal(out[..., 3], img[..., 3])  # alpha passed through


def test_empty_mask_returns_copy_without_running_the_model():
    rep = Counting(_REPAIR)
    inp = Inpainter(rep, device="cpu")
    img = np.arange(100, dtype=np.uint8).reshape(10, 10)
    out = inp.inpaint(img, np.zeros((10, 10), bool))
    assert np.array_equal(out, img) and out is not img and not np.shares_memory(out, img)
    assert rep.calls == []


# ------------------------------------------------------------------ tiling behaviour
def test_tiled_equals_untiled_for_a_local_model():
    """Packed windows are exact; blended windows agree within 0.01 (of the [0,1] range)."""
    img = smooth(160, 200, 3).astype(np.float32)
    mask = np.zeros((160, 200), bool)
    for y, x in [(20, 30), (100, 150), (60, 90), (140, 10)]:
        mask[y : y + 5, x : x + 6] = True
    untiled = Inpainter(LocalFill(), device="cpu", tile_size=256).inpaint(img, mask)
    tiled = Inpainter(LocalFill(), device="cpu", tile_size=48, margin=8).inpaint(img, mask)
    np.testing.assert_allclose(tiled, untiled, atol=1e-6)
    mask[70:90, :] = True  # a band larger than any tile: blended grid
    untiled = Inpainter(LocalFill(), device="cpu", tile_size=256).inpaint(img, mask)
    tiled = Inpainter(LocalFill(), device="cpu", tile_size=64, margin=8).inpaint(img, mask)
    assert np.abs(tiled - untiled).max() < 0.01


def _seam_score(out, mask, windows):
    """Largest jump across a window border inside the hole, relative to nearby jumps.

    For each window edge b (between columns b and b+1), the mean |out[:, b+1] - out[:, b]|
    over the hole rows divided by the median of the same jump over the columns within 8 px
    of b (the edge itself left out). About 1 means no seam.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    inside = out[rows[0] : rows[-1] + 1].astype(np.float64)
    jumps = np.abs(np.diff(inside, axis=1)).mean(axis=(0, 2))
    borders = {b for w in windows for b in (w.x0 - 1, w.x1 - 1) if 0 <= b < len(jumps)}
    scores = []
    for b in borders:
        near = [jumps[i] for i in range(max(0, b - 8), min(len(jumps), b + 9)) if abs(i - b) > 1]
        scores.append(jumps[b] / np.median(near))
    return max(scores)


def test_hole_straddling_tiles_shows_no_seam(monkeypatch):
    img = smooth(96, 256, 3).astype(np.float32)
    mask = np.zeros((96, 256), bool)
    mask[40:56, :] = True  # a band crossing every tile border
    identity_opt = create_model("rnon-optimize", width=0.125, blocks=1)  # identity at init
    inp = Inpainter(_REPAIR, identity_opt, device="cpu", tile_size=64, margin=8, overlap=16)
    from rnon_engine.inference.tiling import plan_tiles

    windows = plan_tiles(mask, 64, 8, 16, multiple=32).windows
    assert len({w.x0 for w in windows}) > 3
    assert _seam_score(inp.inpaint(img, mask), mask, windows) < 2.5
    # The check can fail: plain averaging (no Gaussian weights) leaves seams.
    import rnon_engine.inference.plane_run as plane_run

    monkeypatch.setattr(plane_run, "gaussian_weights", lambda shape: np.ones(shape, np.float32))
    hard = inp.inpaint(img, mask)
    assert _seam_score(hard, mask, windows) > 4.0


def test_tiles_without_holes_are_never_computed():
    rep = Counting(_REPAIR)
    inp = Inpainter(rep, device="cpu", tile_size=64, margin=8)
    img = smooth(512, 512).astype(np.float32)
    mask = np.zeros((512, 512), bool)
    mask[5:9, 500:505] = True
    mask[300:303, 200:204] = True
    out = inp.inpaint(img, mask)
    computed = sum(n * h * w for n, _, h, w in rep.calls)
    assert computed <= 2 * 32 * 32  # two 32x32 windows (hole + margin, multiple of 32)
    assert np.array_equal(out[~mask], img[~mask])


class CountingPad(Counting):
    """Like Counting, for a model that can compute unpadded windows (``pad_to``)."""

    supports_pad_to = True

    def forward(self, image, mask, pad_to=None):
        self.calls.append((tuple(image.shape), pad_to))
        return self.inner(image, mask, pad_to=pad_to)


def _spots(size, centres, radius=3):
    yy, xx = np.mgrid[:size, :size]
    mask = np.zeros((size, size), bool)
    for cy, cx in centres:
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    return mask


def test_small_holes_get_compact_windows_batched_together():
    from rnon_engine.inference.settings import NET_CONTEXT, NET_WINDOW_MULTIPLE

    rep = CountingPad(_REPAIR)
    inp = Inpainter(rep, device="cpu", tile_size=256)
    assert (inp.margin, inp.window_multiple) == (NET_CONTEXT, NET_WINDOW_MULTIPLE)
    # Three spots in separate 8-px cells, each box 8x8 (one cell): windows of 8 + 2*context
    # px rounded up to 16 (64 with the default context of 24).
    side = -(-(8 + 2 * NET_CONTEXT) // NET_WINDOW_MULTIPLE) * NET_WINDOW_MULTIPLE
    img = (smooth(512, 512, 3) * 255).astype(np.uint8)
    mask = _spots(512, [(100, 100), (300, 420), (452, 36)], radius=2)
    out = inp.inpaint(img, mask, stages="repair")
    assert rep.calls == [((3, 3, side, side), NET_WINDOW_MULTIPLE)]  # one batch, unpadded
    assert np.array_equal(out[~mask], img[~mask])
    # Each hole is the network's output on its own window (centred on the hole's cell).
    for cy, cx in [(100, 100), (300, 420)]:
        y0, x0 = cy // 8 * 8 + 4 - side // 2, cx // 8 * 8 + 4 - side // 2
        ys, xs = slice(y0, y0 + side), slice(x0, x0 + side)
        crop = torch.from_numpy(img[ys, xs] / 255.0).float().permute(2, 0, 1)[None]
        valid = torch.from_numpy(~mask[ys, xs])[None, None].float()
        with torch.inference_mode():
            net = _REPAIR(crop * valid, valid, pad_to=NET_WINDOW_MULTIPLE)
        want = np.round(net[0].permute(1, 2, 0).numpy() * 255)
        hole = mask[ys, xs]
        assert np.abs(out[ys, xs][hole].astype(float) - want[hole]).max() <= 1


def test_window_multiple_of_the_network_gives_padded_windows():
    rep = CountingPad(_REPAIR)
    inp = Inpainter(rep, device="cpu", tile_size=256, window_multiple=_REPAIR.multiple)
    img = (smooth(512, 512, 3) * 255).astype(np.uint8)
    mask = _spots(512, [(100, 100), (300, 420)], radius=2)
    inp.inpaint(img, mask, stages="repair")
    # Padded windows cost the same whatever they hold, so the holes are packed freely:
    # windows are multiples of 2**depth (32) and the model pads them itself.
    assert rep.calls and all(pad is None for _, pad in rep.calls)
    assert all(h % 32 == 0 and w % 32 == 0 for (_, _, h, w), _ in rep.calls)


def test_window_multiple_is_checked():
    with pytest.raises(InputError, match="power of two"):
        Inpainter(CountingPad(_REPAIR), device="cpu", window_multiple=24)
    # A model without pad_to cannot compute windows smaller than its multiple.
    with pytest.raises(InputError, match="pad_to"):
        Inpainter(Counting(_REPAIR), device="cpu", window_multiple=8)
    assert Inpainter(Counting(_REPAIR), device="cpu").window_multiple == _REPAIR.multiple
    # The repair generator declares the capability; the inpainter reads it.
    from rnon_engine.inference.inpainter import NET_WINDOW_MULTIPLE

    assert type(_REPAIR).supports_pad_to is True
    assert Inpainter(_REPAIR, device="cpu").window_multiple == NET_WINDOW_MULTIPLE


def test_progress_and_cancel():
    img = smooth(200, 200).astype(np.float32)
    mask = np.zeros((200, 200), bool)
    mask[::50, ::50] = True
    calls = []
    _NET.inpaint(img, mask, progress=lambda d, t: calls.append((d, t)))
    assert len(calls) > 1
    assert [d for d, _ in calls] == list(range(1, len(calls) + 1))
    assert all(t == len(calls) for _, t in calls)
    n = []

    def cancel():
        n.append(1)
        return len(n) > 2

    with pytest.raises(Cancelled):
        _NET.inpaint(img, mask, cancel=cancel)


# ------------------------------------------------------------------ images
def test_uint16_microscopy_sample_and_broadcast_mask():
    from rnon_engine.samples import dead_pixel_stack

    stack, mask = dead_pixel_stack((2, 64, 64))
    out = Inpainter(method="telea", tile_size=64).inpaint(stack, mask, channel_axis=None)
    assert out.dtype == np.uint16
    assert np.array_equal(out[:, ~mask], stack[:, ~mask])
    for z in range(2):
        lo, hi = np.percentile(stack[z][~mask], [0.1, 99.9])  # the plane's mapping range
        assert out[z][mask].min() >= np.floor(lo) and out[z][mask].max() <= np.ceil(hi)
    # dead/hot pixels are gone: each fill is close to the median of its 3x3 neighbourhood
    from scipy import ndimage

    med = ndimage.median_filter(stack.astype(float), size=(1, 3, 3))
    assert np.median(np.abs(out[:, mask] - med[:, mask]) / (med[:, mask] + 1)) < 0.25


def test_stack_with_per_plane_masks_and_channel_axis():
    img = (smooth(32, 40, 3)[None].repeat(3, 0) * 255).astype(np.uint8)  # Z, Y, X, C
    masks = np.zeros((3, 32, 40), bool)
    masks[0, 5:10, 5:10] = True
    masks[2, 20:25, 30:35] = True
    out = _NET.inpaint(img, masks, channel_axis=-1)
    assert np.array_equal(out[1], img[1])  # plane without holes untouched
    assert np.array_equal(out[~masks], img[~masks])
    cfirst = np.moveaxis(img, -1, 1)  # Z, C, Y, X
    out2 = _NET.inpaint(cfirst, masks, channel_axis=1)
    np.testing.assert_array_equal(np.moveaxis(out2, 1, -1), out)


def test_multichannel_c5_each_channel_as_grayscale():
    img = smooth(30, 30, 5).astype(np.float32) * np.arange(1, 6) * 100  # differing ranges
    mask = np.zeros((30, 30), bool)
    mask[10:15, 10:15] = True
    out = Inpainter(method="biharmonic").inpaint(img, mask)
    for c in range(5):
        ref = Inpainter(method="biharmonic").inpaint(img[..., c], mask)
        np.testing.assert_array_equal(out[..., c], ref)


def test_grayscale_replicated_to_three_channels():
    img = smooth(40, 40).astype(np.float32)
    mask = np.zeros((40, 40), bool)
    mask[10:20, 10:20] = True
    gray = Inpainter(_REPAIR, device="cpu").inpaint(img, mask, stages="repair")
    rgb = Inpainter(_REPAIR, device="cpu").inpaint(np.repeat(img[..., None], 3, -1), mask)
    # same network input; the percentile mapping of 3 copies interpolates slightly apart
    np.testing.assert_allclose(gray[mask], rgb[mask].mean(-1), atol=1e-3)


def test_nan_under_the_mask_is_repaired():
    img = smooth(20, 20).astype(np.float32)
    mask = np.zeros((20, 20), bool)
    mask[5:8, 5:8] = True
    img[6, 6] = np.nan
    out = _NET.inpaint(img, mask)
    assert np.isfinite(out).all()


def test_stage2_band_vs_image():
    opt = create_model("rnon-optimize", width=0.125, blocks=1)
    torch.manual_seed(1)
    nn.init.normal_(opt.tail.weight, std=0.1)  # not the identity any more
    img = (smooth(48, 48, 3) * 255).astype(np.uint8)
    mask = np.zeros((48, 48), bool)
    mask[20:28, 20:28] = True
    band = Inpainter(_REPAIR, opt, device="cpu").inpaint(img, mask)
    paper = Inpainter(_REPAIR, opt, device="cpu", stage2_region="image").inpaint(img, mask)
    repair_only = Inpainter(_REPAIR, opt, device="cpu").inpaint(img, mask, stages="repair")
    assert np.array_equal(band[~mask], img[~mask])
    assert not np.array_equal(paper[~mask], img[~mask])  # the paper's whole-image shift
    assert not np.array_equal(band[mask], repair_only[mask])  # stage 2 did act in the hole


def test_stage2_skips_narrow_damage_unless_asked():
    """stage2_min_width: stage 2 refines windows where a square of that side fits in a hole."""
    STAGE2_MIN_WIDTH = 16

    opt = create_model("rnon-optimize", width=0.125, blocks=2)
    torch.manual_seed(4)
    nn.init.normal_(opt.tail.weight, std=0.1)  # not the identity
    calls = []
    opt.register_forward_hook(lambda m, args, out: calls.append(args[0].shape))
    img = (smooth(300, 300, 3) * 255).astype(np.uint8)
    narrow = np.zeros((300, 300), bool)
    narrow[40 : 40 + STAGE2_MIN_WIDTH - 1, 30:200] = True  # one px too narrow
    narrow[200:260, 100:103] = True  # a thin scratch
    wide = narrow.copy()
    wide[150 : 150 + STAGE2_MIN_WIDTH, 200 : 200 + STAGE2_MIN_WIDTH] = True
    inp = Inpainter(_REPAIR, opt, device="cpu", tile_size=128, stage2_min_width=STAGE2_MIN_WIDTH)
    repaired = inp.inpaint(img, narrow, stages="repair")
    assert np.array_equal(inp.inpaint(img, narrow), repaired) and not calls
    out = inp.inpaint(img, wide)
    assert calls and not np.array_equal(out[wide], inp.inpaint(img, wide, stages="repair")[wide])
    # stage2_min_width=0 (the default) refines every window ...
    calls.clear()
    every = Inpainter(_REPAIR, opt, device="cpu", tile_size=128)
    assert not np.array_equal(every.inpaint(img, narrow)[narrow], repaired[narrow]) and calls
    # ... and stage 2 asked alone always runs.
    calls.clear()
    inp.inpaint(repaired, narrow, stages="optimize")
    assert calls
    with pytest.raises(InputError, match="stage2_min_width"):
        Inpainter(_REPAIR, opt, device="cpu", stage2_min_width=-1)


def test_stage2_band_boxes_equal_stage2_over_the_whole_window():
    """Stage 2 on one box per hole group (plus halo) gives what it gives on the whole window."""
    from rnon_engine.inference.tiling import band_boxes

    opt = create_model("rnon-optimize", width=0.125, blocks=2)
    torch.manual_seed(3)
    nn.init.normal_(opt.tail.weight, std=0.1)
    img = smooth(120, 200, 3).astype(np.float32)
    mask = np.zeros((120, 200), bool)
    mask[10:16, 10:18] = True
    mask[90:100, 150:158] = True
    mask[100:104, 20:40] = True
    halo = opt.config.halo
    boxes = band_boxes(mask, halo)
    assert len(boxes) == 2  # the two left holes share a box (their halos overlap)
    assert sum((y.stop - y.start) * (x.stop - x.start) for y, x in boxes) < mask.size / 2
    inp = Inpainter(_REPAIR, opt, device="cpu", tile_size=256, stage2_halo=None)
    crops, holes = img[None].copy(), mask[None]
    crops[holes] = 0.0
    repaired = inp._fill(crops, holes, band=False)  # stage 1 composited
    with torch.inference_mode():
        whole = opt(torch.from_numpy(repaired).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    expected = np.where(holes[..., None], whole.numpy(), repaired)
    calls = []
    hook = opt.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[-2:]))
    try:
        banded = inp._fill(crops, holes, band=True)
    finally:
        hook.remove()
    assert sorted(calls) == sorted(
        torch.Size([y.stop - y.start, x.stop - x.start]) for y, x in boxes
    )
    np.testing.assert_allclose(banded, expected, atol=1e-5)
    # The default halo (STAGE2_HALO, under this network's radius) gives smaller boxes.
    from rnon_engine.inference.inpainter import STAGE2_HALO

    assert STAGE2_HALO < halo
    calls.clear()
    hook = opt.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[-2:]))
    try:
        Inpainter(_REPAIR, opt, device="cpu", tile_size=256)._fill(crops, holes, band=True)
    finally:
        hook.remove()
    assert sorted(calls) == sorted(
        torch.Size([y.stop - y.start, x.stop - x.start]) for y, x in band_boxes(mask, STAGE2_HALO)
    )
    with pytest.raises(InputError, match="stage2_halo"):
        Inpainter(_REPAIR, opt, device="cpu", stage2_halo=-1)


def test_stage2_alone_equals_the_second_half_of_both():
    opt = create_model("rnon-optimize", width=0.125, blocks=1)
    torch.manual_seed(2)
    nn.init.normal_(opt.tail.weight, std=0.1)
    inp = Inpainter(_REPAIR, opt, device="cpu")
    img = smooth(48, 48, 3).astype(np.float32)
    mask = np.zeros((48, 48), bool)
    mask[10:30, 14:22] = True
    both = inp.inpaint(img, mask)
    repaired = inp.inpaint(img, mask, stages="repair")
    second = inp.inpaint(repaired, mask, stages="optimize")
    assert not np.allclose(repaired, both)
    np.testing.assert_allclose(second, both, atol=1e-5)
    assert np.array_equal(second[~mask], img[~mask])
    with pytest.raises(InputError, match="no optimization network"):
        Inpainter(_REPAIR, None, device="cpu").inpaint(img, mask, stages="optimize")
    with pytest.raises(InputError, match="no optimization network"):
        Inpainter.from_pretrained("telea").inpaint(img, mask, stages="optimize")


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("image", "mask", "kwargs", "match"),
    [
        (np.zeros((10, 10)), np.zeros((10, 11)), {}, "does not match"),
        (np.zeros((3, 10, 10)), np.zeros((10, 10)), {}, "channel_axis=None"),
        (np.zeros((10,)), np.zeros((10,)), {}, "at least 2"),
        (np.zeros((2, 3, 10, 10)), np.zeros((10, 10)), {}, "channel_axis"),
        (np.zeros((10, 10)), np.ones((10, 10)), {}, "covers every pixel"),
        (
            np.zeros((2, 10, 10)),
            np.stack([np.zeros((10, 10)), np.ones((10, 10))]),
            {"channel_axis": None},
            r"plane \(1,\)",
        ),
        (np.zeros((10, 10), bool), np.zeros((10, 10)), {}, "dtype bool"),
        (np.zeros((10, 10)), np.zeros((10, 10)), {"stages": "all"}, "stages"),
        (np.zeros((10, 10, 3)), np.zeros((10, 10)), {"channel_axis": 5}, "out of range"),
        (np.zeros((10, 10)), np.full((10, 10), np.nan), {}, "NaN"),
        # issue 21: CHW RGB is hinted to channel_axis=0
        (np.zeros((3, 10, 10)), np.zeros((10, 10)), {}, "RGB as C×Y×X\\? pass channel_axis=0"),
        (None, np.zeros((10, 10)), {}, "image is None"),
        (np.zeros((10, 10)), None, {}, "mask is None"),
        ([[0.0, 1.0], [0.5]], np.zeros((2, 2)), {}, "rows differ in length"),
        (np.zeros((10, 10)), [[0, 1], [1]], {}, "mask is not a rectangular array"),
        ("picture.png", np.zeros((10, 10)), {}, "read the file first"),
        (torch.zeros(10, 10, requires_grad=True), np.zeros((10, 10)), {}, r"detach\(\)"),
        (np.zeros((10, 10)), torch.zeros(10, 10, requires_grad=True), {}, "mask is a torch"),
    ],
)
def test_bad_input(image, mask, kwargs, match):
    with pytest.raises(InputError, match=match):
        _NET.inpaint(image, mask, **kwargs)


def _spots_and_a_large_hole(size=96):
    mask = np.zeros((size, size), bool)
    for y, x in [(10, 12), (14, 60), (70, 20), (80, 80)]:
        mask[y - 2 : y + 3, x - 2 : x + 3] = True
    mask[30:62, 24:90] = True  # wider than the 64 px tiles: blended windows
    return mask


@pytest.mark.parametrize(
    "make",
    [
        lambda: _NET,
        lambda: Inpainter(_REPAIR, _OPT, device="cpu", tile_size=64, stage2_region="image"),
        lambda: Inpainter.from_pretrained("telea", tile_size=64),
        lambda: Inpainter.from_pretrained("biharmonic", tile_size=64),
    ],
    ids=["rnon-band", "rnon-image", "telea", "biharmonic"],
)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_out_array_and_in_place_give_the_same_pixels(make, dtype):
    inp = make()
    img = smooth(96, 96, 3)
    img = (img * 255).astype(np.uint8) if dtype == np.uint8 else img.astype(np.float32)
    mask = _spots_and_a_large_hole()
    want = inp.inpaint(img, mask)
    given = np.zeros_like(img)
    got = inp.inpaint(img, mask, out=given)
    assert got is given and np.array_equal(given, want)
    before = img.copy()
    got = inp.inpaint(img, mask, out=img)  # in place
    assert got is img and np.array_equal(img, want)
    # No hole: out holds the image.
    given = np.zeros_like(img)
    assert np.array_equal(inp.inpaint(before, np.zeros_like(mask), out=given), before)


def test_out_array_with_neighbouring_planes():
    stack = np.stack([smooth(48, 48, seed=s) for s in range(3)]).astype(np.float32)
    masks = np.zeros(stack.shape, bool)
    masks[1, 10:20, 10:30] = True
    want = _NET.inpaint(stack, masks, channel_axis=None, context_planes=1)
    got = _NET.inpaint(stack, masks, channel_axis=None, context_planes=1, out=stack)
    assert got is stack and np.array_equal(stack, want)


@pytest.mark.parametrize(
    ("out", "kwargs", "match"),
    [
        ([[0.0] * 10] * 10, {}, "out must be a numpy array"),
        (np.zeros((10, 11), np.float32), {}, r"out has shape \(10, 11\)"),
        (np.zeros((10, 10), np.float64), {}, "dtype float64"),
        ("read-only", {}, "read-only"),
        ("view", {}, "overlaps the image"),
        ("image", {"stages": "optimize"}, "cannot repair the image in place"),
    ],
)
def test_bad_out_is_refused_before_any_work(out, kwargs, match):
    rep = Counting(_REPAIR)
    inp = Inpainter(rep, _OPT, device="cpu")
    img = smooth(10, 10).astype(np.float32)
    mask = np.zeros((10, 10), bool)
    mask[4:6, 4:6] = True
    before = img.copy()
    if isinstance(out, str):
        read_only = np.zeros_like(img)
        read_only.flags.writeable = False
        out = {"read-only": read_only, "view": img[:], "image": img}[out]
    with pytest.raises(InputError, match=match):
        inp.inpaint(img, mask, out=out, **kwargs)
    assert rep.calls == [] and np.array_equal(img, before)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_outside_mask_is_refused(bad):
    rep = Counting(_REPAIR)
    img = np.zeros((10, 10), np.float32)
    img[1, 1] = bad
    mask = np.zeros((10, 10), bool)
    mask[5, 5] = True
    with pytest.raises(InputError, match="NaN or infinite"):
        Inpainter(rep, device="cpu").inpaint(img, mask)
    assert rep.calls == []


def test_plain_tensors_and_lists_are_accepted():
    img = smooth(12, 12)
    mask = np.zeros((12, 12), bool)
    mask[4:6, 4:6] = True
    want = _NET.inpaint(img, mask)
    np.testing.assert_array_equal(_NET.inpaint(torch.from_numpy(img), mask.tolist()), want)
    np.testing.assert_array_equal(_NET.inpaint(img.tolist(), torch.from_numpy(mask)), want)


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "4"])
def test_batch_size_is_checked(size):
    with pytest.raises(InputError, match="batch_size must be an integer >= 1"):
        Inpainter(_REPAIR, device="cpu", batch_size=size)
    with pytest.raises(InputError, match="batch_size must be an integer >= 1"):
        Inpainter.from_pretrained("telea", batch_size=size)


def test_unknown_method_and_missing_weights(tmp_path):
    with pytest.raises(InputError, match="unknown method"):
        Inpainter.from_pretrained("lama")
    with pytest.raises(WeightsError, match="not found"):
        Inpainter.from_pretrained(tmp_path / "nope.safetensors")
    path = save_weights(_OPT, tmp_path / "opt.safetensors")
    with pytest.raises(WeightsError, match="repair generator"):
        Inpainter.from_pretrained(path)
    with pytest.raises(InputError, match="stage2_region"):
        Inpainter(_REPAIR, stage2_region="everywhere")


# ------------------------------------------------------------------ weights
def test_from_pretrained_path_with_stage2_metadata(tmp_path):
    save_weights(_OPT, tmp_path / "o.safetensors")
    rp = save_weights(_REPAIR, tmp_path / "r.safetensors", stage2_file="o.safetensors")
    inp = Inpainter.from_pretrained(rp, device="cpu")
    assert inp.method == "rnon" and inp.optimize is not None
    assert inp.provenance["stages"] == ["repair", "optimize"]
    assert set(inp.provenance["sha256"]) == {"repair", "optimize"}
    alone = Inpainter.from_pretrained(save_weights(_REPAIR, tmp_path / "x.safetensors"))
    assert alone.optimize is None and alone.provenance["stages"] == ["repair"]
    (tmp_path / "o.safetensors").unlink()
    with pytest.raises(WeightsError, match="stage-2 file"):
        Inpainter.from_pretrained(rp)


def test_trainer_exports_are_paired(tmp_path):
    rp = save_weights(_REPAIR, tmp_path / "repair_generator.safetensors")
    save_weights(_OPT, tmp_path / "optimize_generator.safetensors", repair_weights=str(rp))
    assert Inpainter.from_pretrained(rp).optimize is not None


def test_default_is_the_trained_packaged_model():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no placeholder or other warning
        inp = Inpainter.from_pretrained("default", device="cpu")
    assert inp.provenance["stages"] == ["repair", "optimize"]
    from rnon_engine.train.config import config_path, config_to_dict, load_config

    cpu_lite = config_to_dict(load_config(config_path("cpu-lite")))
    for model, stage in ((inp.repair, "repair"), (inp.optimize, "optimize")):
        assert "placeholder" not in model.metadata
        assert model.metadata["stage"] == stage and model.metadata["step"] > 0
        # The packaged cpu-lite config trains the shipped networks (runs name themselves:
        # ctl-B, ...): every key it sets is the shipped architecture's.
        shipped = dataclasses.asdict(model.config)
        expected = cpu_lite[stage]["model"]
        assert {k: shipped[k] for k in expected} == {
            k: tuple(v) if isinstance(v, list) else v for k, v in expected.items()
        }
    assert len(inp.provenance["sha256"]["repair"]) == 64
    assert list_methods() == [
        "auto", "default", "telea", "ns", "biharmonic", "neighbours", "stack"
    ]
    assert rnon_engine.Inpainter is Inpainter


def test_demo_writes_before_after_png(tmp_path):
    import imageio.v3 as iio

    from rnon_engine.demo import main

    assert main(["--out", str(tmp_path / "ba.png"), "--method", "telea"]) == 0
    pic = iio.imread(tmp_path / "ba.png")
    assert pic.shape == (512, 512 * 2 + 8, 3)


def test_a_cancelled_call_into_out_leaves_the_image_outside_the_mask(monkeypatch):
    # The copy of the image into out runs beside the first batches; a call that stops
    # returns (raises) only once that copy is done, never while it still writes.
    import time

    import rnon_engine.inference.inpainter as inpainter_module

    real_into = inpainter_module.into

    def slow_into(out, image):
        time.sleep(0.2)
        return real_into(out, image)

    monkeypatch.setattr(inpainter_module, "into", slow_into)
    monkeypatch.setattr(_NET, "parallel_guide", True)  # a core to spare: the copy in a thread
    img = (smooth(96, 96, 3) * 255).astype(np.uint8)
    mask = _spots_and_a_large_hole()
    given = np.zeros_like(img)
    with pytest.raises(Cancelled):  # before the first batch, while the copy still runs
        _NET.inpaint(img, mask, out=given, cancel=lambda: True)
    assert np.array_equal(given[mask == 0], img[mask == 0])


def test_a_non_contiguous_image_gives_a_c_ordered_result_with_the_same_pixels():
    # The result is allocated and then filled with the image's copy in a thread: laid out
    # as image.copy() lays it out, whatever the image's strides.
    img = (smooth(96, 96, 3) * 255).astype(np.uint8)
    mask = _spots_and_a_large_hole()
    want = _NET.inpaint(img, mask)
    fortran = np.asfortranarray(img)
    got = _NET.inpaint(fortran, mask)
    assert got.flags.c_contiguous and np.array_equal(got, want)
