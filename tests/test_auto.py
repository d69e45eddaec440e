"""The "auto" method (routing, compositing, fallback) and Inpainter.estimate_error."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from rnon_engine.errors import InputError, WeightsError
from rnon_engine.inference import auto as auto_module
from rnon_engine.inference.inpainter import Inpainter, describe, list_methods
from rnon_engine.inference.routing import (
    FALLBACK_RULES,
    KINDS,
    LABEL_NAMES,
    RULES,
    classify,
    groups,
    kind_of,
    method_labels,
    method_pixels,
)
from rnon_engine.inference.sparse_biharmonic import fill_biharmonic


@pytest.fixture(scope="module")
def auto() -> Inpainter:
    return Inpainter.from_pretrained("auto", device="cpu")


def picture(size: int = 96, seed: int = 0) -> np.ndarray:
    """A smooth RGB picture with some texture, uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.stack([127 + 90 * np.sin(5 * x + c) * np.cos(3 * y - c) for c in range(3)], -1)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def one_of_each(size: int = 160) -> tuple[np.ndarray, dict[str, tuple[int, int]]]:
    """A mask with one hole of every kind, far apart, and a pixel inside each."""
    m = np.zeros((size, size), np.uint8)
    m[10, 10] = 1  # pixel
    m[10, 30] = m[11, 31] = m[12, 30] = 1  # speck: a dead-pixel cluster
    cv2.line(m, (50, 10), (150, 14), 1, 2)  # thin: a 2-px scratch
    cv2.circle(m, (20, 60), 6, 1, -1)  # spot: r6
    cv2.circle(m, (70, 70), 16, 1, -1)  # blob: r16
    cv2.line(m, (10, 130), (150, 110), 1, 12)  # large: a long wide stroke
    cv2.circle(m, (130, 60), 30, 1, -1)  # also large: r30 (thickness > 51)
    where = {
        "pixel": (10, 10),
        "speck": (11, 31),
        "thin": (12, 100),
        "spot": (60, 20),
        "blob": (70, 70),
        "large": (120, 80),
    }
    return m.astype(bool), where


def test_groups_measure_kinds():
    mask, where = one_of_each()
    labels, found = groups(mask)
    by_label = {g.label: g for g in found}
    for kind, (y, x) in where.items():
        assert by_label[labels[y, x]].kind == kind, kind
    g = by_label[labels[10, 10]]
    assert (g.pixels, g.thickness) == (1, 1)
    assert by_label[labels[60, 20]].pixels == int(np.count_nonzero(labels == labels[60, 20]))
    assert by_label[labels[60, 130]].kind == "large"


def test_close_groups_merge_far_ones_do_not():
    m = np.zeros((20, 20), bool)
    m[5, 5] = m[5, 8] = True  # two known pixels between: one group
    m[15, 5] = m[15, 9] = True  # three known pixels between: two groups
    _, found = groups(m)
    assert sorted(g.pixels for g in found) == [1, 1, 2]


def test_kind_of_thresholds():
    assert kind_of(1, 1) == "pixel"
    assert kind_of(25, 3) == "speck"
    assert kind_of(26, 3) == "thin"
    assert kind_of(300, 5) == "thin"
    assert kind_of(49, 7) == "spot"
    assert kind_of(2 * 21 * 21 + 1, 21) == "large"  # too elongated for a spot
    assert kind_of(700, 31) == "blob"
    assert kind_of(10_000, 61) == "large"


def test_each_kind_goes_where_the_rules_say(auto):
    mask, where = one_of_each()
    labels = auto.method_labels(mask)
    assert labels.dtype == np.uint8 and labels.shape == mask.shape
    assert not labels[~mask].any()
    assert labels[mask].all()
    for kind, (y, x) in where.items():
        assert LABEL_NAMES[int(labels[y, x])] == RULES[kind], kind
    # the same with leading axes: each plane on its own
    stack = np.stack([mask, np.zeros_like(mask)])
    labels3 = method_labels(stack)
    assert np.array_equal(labels3[0], labels) and not labels3[1].any()
    # the hole pixels alone: the same codes, in raster order
    flat, codes = method_pixels(mask)
    assert np.array_equal(flat, np.flatnonzero(mask)) and np.array_equal(codes, labels[mask])


def test_per_plane_masks_are_routed_plane_by_plane(auto):
    # A uint8 stack with one mask per plane: each plane's holes go where that plane's
    # groups say, and the result is each plane repaired on its own.
    mask, _ = one_of_each(160)
    masks = np.stack([mask, mask.T, np.zeros_like(mask)])
    image = np.stack([picture(160, seed=s) for s in range(3)])
    out = auto.inpaint(image, masks, channel_axis=-1)
    counts = auto.last_counts
    expect_counts: dict[str, int] = {}
    for i in range(3):
        plane = auto.inpaint(image[i], masks[i]) if masks[i].any() else image[i]
        assert np.array_equal(out[i], plane), i
        for name, n in (auto.last_counts if masks[i].any() else {}).items():
            expect_counts[name] = expect_counts.get(name, 0) + n
    assert counts == expect_counts and set(counts) == {"biharmonic", "default"}


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_composite_identical_outside_mask_and_counts(auto, dtype):
    mask, _ = one_of_each(160)
    base = picture(160).astype(np.float32)
    img = {
        np.uint8: base.astype(np.uint8),
        np.uint16: (base * 200).astype(np.uint16),
        np.float32: base / 255.0 - 0.3,
    }[dtype]
    before = img.copy()
    out = auto.inpaint(img, mask)
    assert out.dtype == img.dtype and out.shape == img.shape
    assert np.array_equal(out[~mask], img[~mask])
    assert np.array_equal(img, before)
    assert np.isfinite(out.astype(np.float64)).all()
    counts = auto.last_counts
    assert sum(counts.values()) == int(mask.sum())
    expect = {
        m: int(np.count_nonzero(auto.method_labels(mask) == c)) for c, m in LABEL_NAMES.items()
    }
    assert counts == {m: c for m, c in expect.items() if c}
    assert auto.run_provenance()["pixels_per_method"] == counts
    # every fill lands near the picture's values (no wild values from any member)
    lo, hi = float(img[~mask].min()), float(img[~mask].max())
    span = hi - lo
    assert out[mask].min() >= lo - 0.05 * span and out[mask].max() <= hi + 0.05 * span


def test_nan_in_holes_and_grayscale_stack(auto):
    img = picture(64)[..., 0].astype(np.float32)
    stack = np.stack([img, img[::-1]])
    mask = np.zeros((2, 64, 64), bool)
    mask[0, 10, 10] = mask[1, 30:40, 30:40] = True
    stack[mask] = np.nan
    out = auto.inpaint(stack, mask, channel_axis=None)
    assert np.isfinite(out).all()
    assert np.array_equal(out[~mask], stack[~mask])


def test_isolated_pixels_never_reach_the_network(auto, monkeypatch):
    net = auto.members["default"]

    def boom(*a, **k):
        raise AssertionError("the network ran")

    monkeypatch.setattr(net, "inpaint", boom)
    rng = np.random.default_rng(1)
    mask = np.zeros((128, 128), bool)
    mask.ravel()[rng.choice(128 * 128, 80, replace=False)] = True
    img = picture(128)
    out = auto.inpaint(img, mask)
    assert np.array_equal(out[~mask], img[~mask])
    assert "default" not in auto.last_counts


def test_bad_input_refused_like_other_methods(auto):
    img = picture(32)
    with pytest.raises(InputError, match="mask shape"):
        auto.inpaint(img, np.ones((31, 32), bool))
    with pytest.raises(InputError, match="stages"):
        auto.inpaint(img, np.zeros((32, 32), bool), stages="optimize")
    with pytest.raises(InputError, match="every pixel"):
        auto.inpaint(img, np.ones((32, 32), bool))
    empty = auto.inpaint(img, np.zeros((32, 32), bool))
    assert np.array_equal(empty, img) and empty is not img


def test_listed_and_described(auto):
    assert list_methods()[0] == "auto"
    assert describe("auto") == auto.provenance
    assert auto.provenance["method"] == "auto"
    assert auto.provenance["rules"] == RULES
    assert "sha256" in auto.provenance


def test_fallback_without_weights_warns_once(monkeypatch):
    import rnon_engine.pretrained as pretrained

    def missing():
        raise WeightsError("the packaged weights file is missing")

    monkeypatch.setattr(pretrained, "default_paths", missing)
    monkeypatch.setattr(auto_module, "_warned_fallback", False)
    with pytest.warns(RuntimeWarning, match="classical rules"):
        inp = Inpainter.from_pretrained("auto")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = Inpainter.from_pretrained("auto")  # said once only
    assert inp.rules == FALLBACK_RULES == again.rules
    assert "default" not in inp.members and inp.device is None
    assert describe("auto") == inp.provenance
    mask, _ = one_of_each(160)
    img = picture(160)
    out = inp.inpaint(img, mask)
    assert np.array_equal(out[~mask], img[~mask])
    assert sum(inp.last_counts.values()) == int(mask.sum())
    assert set(inp.last_counts) <= set(FALLBACK_RULES.values())


def test_sparse_biharmonic_equals_scikit_image():
    from skimage.restoration import inpaint_biharmonic

    img = picture(80).astype(np.float64) / 255.0
    mask = np.zeros((80, 80), bool)
    mask[20, 20] = True
    mask[40:43, 30] = True
    cv2.line(mask.view(np.uint8), (10, 60), (70, 66), 1, 2)
    mask[50:58, 50:57] = True
    ref = inpaint_biharmonic(img, mask, channel_axis=-1, split_into_regions=True)
    ours = fill_biharmonic(img, mask)
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    assert np.array_equal(ours[~mask], img[~mask])
    u8 = (img * 255).astype(np.uint8)
    np.testing.assert_allclose(fill_biharmonic(u8, mask)[mask], np.rint(ref[mask] * 255), atol=1)



@pytest.mark.parametrize("edge", [False, True])
def test_sparse_solve_is_the_same_with_either_lookup_and_without_mirroring(monkeypatch, edge):
    # Windows number their hole pixels in a dense index and skip the mirroring when every
    # hole is 2 px inside; whole planes search the sorted indices and mirror at the edges.
    # Both give the very same system, so the very same numbers.
    import rnon_engine.inference.sparse_biharmonic as sb

    rng = np.random.default_rng(4)
    values = rng.random((3, 30, 40, 3)).astype(np.float32)
    holes = np.zeros((3, 30, 40), bool)
    holes[0, 5:9, 6:12] = holes[1, 20, 30] = holes[2, 10:25, 15] = True
    if edge:
        holes[1, 0:2, 0:3] = holes[2, 29, 39] = True
    dense = sb.solve_windows(values, holes)
    monkeypatch.setattr(sb, "_DENSE_INDEX_MAX", 0)
    searched = sb.solve_windows(values, holes)
    mirrored = []
    real_mirror = sb._mirror
    monkeypatch.setattr(sb, "_mirror", lambda i, n: mirrored.append(1) or real_mirror(i, n))
    again = sb.solve_windows(values, holes)
    assert np.array_equal(dense, searched) and np.array_equal(dense, again)
    assert bool(mirrored) == edge
    # The system itself: the stencil applied to the fill (known pixels as they are,
    # mirrored at the edges) is zero at every hole pixel.
    full = values.astype(np.float64)
    bs, ys, xs = np.nonzero(holes)
    full[bs, ys, xs] = dense
    residual = np.zeros((bs.size, 3))
    for dy, dx, coef in sb.STENCIL:
        residual += coef * full[bs, real_mirror(ys + dy, 30), real_mirror(xs + dx, 40)]
    assert np.abs(residual).max() < 1e-9


def test_sparse_solve_of_inner_holes_factorises_the_symmetric_system_without_pivoting(
    monkeypatch,
):
    # Holes 2 px inside their windows: no mirrored equation, so the system is symmetric
    # positive definite and is factorised as such (a symmetric order, no pivot search):
    # the solution of the general factorisation, within float64 rounding.
    import scipy.sparse.linalg as sla

    import rnon_engine.inference.sparse_biharmonic as sb

    rng = np.random.default_rng(5)
    values = rng.random((4, 40, 40, 3))
    holes = np.zeros((4, 40, 40), bool)
    for i in range(4):
        cv2.circle(holes[i].view(np.uint8), (12 + 4 * i, 20), 3 + 2 * i, 1, -1)
    holes[2, 30:33, 5:30] = True
    calls = []
    real = sla.splu
    monkeypatch.setattr(sla, "splu", lambda a, **kw: calls.append((a, kw)) or real(a, **kw))
    got = sb.solve_windows(values, holes)
    (a, kw), = calls
    assert kw.get("options") == {"SymmetricMode": True} and kw.get("diag_pivot_thresh") == 0
    assert abs(a - a.T).max() == 0
    _, ys, xs = np.nonzero(holes)
    assert ys.min() >= 2 and xs.min() >= 2
    rhs = np.zeros_like(got)
    # The same system through the general factorisation (partial pivoting, COLAMD).
    full = values.copy()
    bs, ys, xs = np.nonzero(holes)
    full[bs, ys, xs] = 0
    for dy, dx, coef in sb.STENCIL:
        rhs -= coef * full[bs, ys + dy, xs + dx]
    np.testing.assert_allclose(real(a.tocsc()).solve(rhs), got, rtol=0, atol=1e-12)
    # Holes at a window's edge are mirrored: a general system, factorised as before.
    holes[1, 0, 0] = True
    calls.clear()
    sb.solve_windows(values, holes)
    assert calls[0][1] == {}


# ---------------------------------------------------------------- estimate_error


def _holes(size: int = 96) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    cv2.circle(m, (30, 30), 5, 1, -1)
    cv2.line(m, (50, 70), (90, 80), 1, 2)
    m[10, 80] = m[80, 10] = 1
    return m.astype(bool)


def test_estimate_scales_with_the_image(auto):
    img = picture(96).astype(np.float32) / 255.0
    mask = _holes()
    e1 = auto.estimate_error(img, mask, seed=3)
    e7 = auto.estimate_error(img * 7.0, mask, seed=3)
    assert e1 > 0
    assert e7 == pytest.approx(7.0 * e1, rel=1e-3)


def test_estimate_in_image_units_and_deterministic(auto):
    img = picture(96)
    mask = _holes()
    a = auto.estimate_error(img, mask, seed=5)
    assert isinstance(a, float)
    assert a == auto.estimate_error(img, mask, seed=5)
    # a constant picture is repaired to within a grey level: estimate below 1
    assert auto.estimate_error(np.full((64, 64), 77, np.uint8), mask[:64, :64], seed=0) < 1.0
    # a telea estimate is of the same order as telea's true error on the holes
    telea = Inpainter.from_pretrained("telea")
    est = telea.estimate_error(img, mask, seed=1)
    out = telea.inpaint(img, mask)
    truth = np.sqrt(np.mean((out[mask].astype(float) - img[mask]) ** 2))
    assert truth / 4 < est < truth * 4


def test_estimate_refuses_empty_mask_and_bad_input(auto):
    img = picture(32)
    with pytest.raises(InputError, match="mask is empty"):
        auto.estimate_error(img, np.zeros((32, 32), bool))
    with pytest.raises(InputError, match="mask shape"):
        auto.estimate_error(img, np.ones((31, 32), bool))
    with pytest.raises(InputError, match="repeats"):
        auto.estimate_error(img, np.ones((32, 32), bool), repeats=0)


def test_batch_auto_is_the_default_and_matches_the_engine(tmp_path, auto):
    import zarr

    from rnon_engine.batch.cli import main

    img = np.stack([picture(64)[..., c] for c in range(2)]).astype(np.uint16) * 100
    mask = np.zeros((64, 64), np.uint8)
    mask[20, 20] = 1
    mask[40:52, 30:42] = 1
    for path, data in (("in.zarr", img), ("m.zarr", mask)):
        z = zarr.create_array(store=str(tmp_path / path), shape=data.shape, dtype=data.dtype)
        z[...] = data
    out = tmp_path / "out.zarr"
    args = [str(tmp_path / "in.zarr"), "--mask", str(tmp_path / "m.zarr"), "-o", str(out)]
    assert main([*args, "--no-progress", "--threads", "1"]) == 0  # no --model: auto
    z = zarr.open_array(str(out))
    res = z[...]
    for p in range(2):
        assert np.array_equal(res[p], auto.inpaint(img[p], mask, channel_axis=None))
    assert dict(z.attrs)["rnon_batch"]["model"]["method"] == "auto"


def test_describe_auto_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys; from rnon_engine.inference.provenance import describe; "
        "p = describe('auto'); assert p['method'] == 'auto', p; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_progress_cancel_and_rgba(auto):
    from rnon_engine.errors import Cancelled

    mask, _ = one_of_each(160)
    rgba = np.concatenate([picture(160), np.full((160, 160, 1), 200, np.uint8)], axis=-1)
    seen = []
    out = auto.inpaint(rgba, mask, progress=lambda d, n: seen.append((d, n)))
    assert seen and seen[-1][0] == seen[-1][1]
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:], strict=False))
    assert (out[..., 3] == 200).all()  # alpha copied, also in the holes
    assert np.array_equal(out[~mask], rgba[~mask])
    with pytest.raises(Cancelled):
        auto.inpaint(rgba, mask, cancel=lambda: True)
    est = auto.estimate_error(rgba, mask, seed=0)
    assert 0 < est < 255


def test_estimate_detail_per_kind(auto):
    from rnon_engine.inference.estimate import estimate_error_detail, probe_mask

    img = picture(96)
    mask = _holes()
    detail = estimate_error_detail(auto, img, mask, seed=5)
    assert detail.rmse == auto.estimate_error(img, mask, seed=5)
    assert set(detail.by_kind) == set(detail.probed_pixels) <= {"pixel", "thin", "spot"}
    assert "spot" in detail.by_kind and "pixel" in detail.by_kind
    pooled = sum(detail.by_kind[k] ** 2 * detail.probed_pixels[k] for k in detail.by_kind)
    assert detail.rmse == pytest.approx(np.sqrt(pooled / sum(detail.probed_pixels.values())))
    probes = probe_mask(mask, np.random.default_rng(0))
    assert not (probes[mask] > 0).any()
    # every probe keeps its distance from the holes
    from scipy import ndimage

    near = ndimage.binary_dilation(mask, np.ones((3, 3), bool), iterations=3)
    assert not (probes[near] > 0).any()


def test_bad_rules_refused():
    from rnon_engine.inference.auto import build_auto

    with pytest.raises(InputError, match="every kind"):
        build_auto(rules={"pixel": "telea"})
    with pytest.raises(InputError, match="unknown method"):
        build_auto(rules={**FALLBACK_RULES, "large": "magic"})
    with pytest.raises(InputError, match="sparse solve"):
        build_auto(rules={**FALLBACK_RULES, "large": "biharmonic"})
    classical = build_auto(rules={k: "telea" for k in FALLBACK_RULES})
    assert set(classical.members) == {"telea"} and classical.device is None


def test_one_method_for_every_hole_skips_the_prefill_with_the_same_result(monkeypatch):
    rng = np.random.default_rng(5)
    image = rng.random((96, 120, 3)).astype(np.float32)
    mask = np.zeros((96, 120), bool)
    mask[30:60, 20:90] = True  # one large hole: the network's
    auto = Inpainter.from_pretrained("auto", "cpu")
    network = auto.members["default"]
    expect = network.inpaint(image, mask)
    calls = []
    prefill = auto.members["telea"]
    monkeypatch.setattr(prefill, "inpaint", lambda *a, **k: calls.append(1))
    out = auto.inpaint(image, mask)
    assert calls == [] and np.array_equal(out, expect)
    assert auto.last_counts == {"default": int(mask.sum())}
    # Bad input is still refused with the inpainter's message, before any work.
    with pytest.raises(InputError, match="mask"):
        auto.inpaint(image, mask[:50])


def test_no_prefill_for_the_network_and_biharmonic_with_the_same_result(monkeypatch):
    # Spots (the network's) and dead pixels / specks (biharmonic): neither reads a hole's
    # value (the network runs last and never reads its own holes; a biharmonic stencil
    # never reaches another group), so the Telea prefill only checks the input and copies
    # it, and the result is what prefilling every hole gave.
    image = picture(160, seed=3)
    mask, _ = one_of_each(160)
    auto = Inpainter.from_pretrained("auto", "cpu")
    labels = auto.method_labels(mask)
    codes = {name: code for code, name in LABEL_NAMES.items()}
    keep = np.isin(labels, [0, codes["biharmonic"], codes["default"]])
    mask = mask & keep  # only kinds routed to biharmonic or the network
    labels = auto.method_labels(mask)
    assert set(np.unique(labels)) == {0, codes["biharmonic"], codes["default"]}
    prefill = auto.members["telea"]
    expect = prefill.inpaint(image, mask)
    expect = fill_biharmonic(expect, labels == codes["biharmonic"])
    expect = auto.members["default"].inpaint(expect, labels == codes["default"])
    seen = []
    real = prefill.inpaint
    monkeypatch.setattr(prefill, "inpaint", lambda img, m, **k: seen.append(m) or real(img, m, **k))
    out = auto.inpaint(image, mask)
    assert np.array_equal(out, expect)
    assert len(seen) == 1 and seen[0].shape == mask.shape and not seen[0].any()
    # Only biharmonic holes: the same, without a prefill.
    bih = labels == codes["biharmonic"]
    seen.clear()
    out = auto.inpaint(image, bih)
    assert np.array_equal(out, fill_biharmonic(real(image, bih), bih))
    assert len(seen) == 1 and not seen[0].any()


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_biharmonic_fill_ignores_the_values_held_in_the_holes(dtype):
    # The fill is clipped to the range of the known pixels: whatever the holes hold (the
    # plane's extremes, NaN), the result is the same and within that range.
    rng = np.random.default_rng(2)
    image = (50 + 150 * rng.random((64, 64, 3))).astype(dtype)
    mask = np.zeros((64, 64), bool)
    mask[10:14, 10:30] = mask[40, 40] = mask[50:53, 5:8] = True
    ref = image.copy()
    ref[mask] = 100
    expect = fill_biharmonic(ref, mask)
    lo, hi = image[~mask].min(axis=0), image[~mask].max(axis=0)
    assert (expect[mask] >= lo).all() and (expect[mask] <= hi).all()
    fills = [0, 255, image[~mask].min(axis=0)] + ([np.nan] if dtype == np.float32 else [])
    for value in fills:
        held = image.copy()
        held[mask] = value
        assert np.array_equal(fill_biharmonic(held, mask), expect)


@pytest.mark.parametrize("density", [0.01, 0.08, 0.3])
def test_group_labels_follow_scipys_raster_order(density):
    """OpenCV's components, renumbered: scipy's labels, edge-cut and U-shaped groups too."""
    from scipy import ndimage

    from rnon_engine.inference.routing import MERGE_GAP

    rng = np.random.default_rng(int(density * 1000))
    mask = rng.random((150, 211)) < density
    mask[0, 100] = mask[1, 95] = True  # a group cut by the top edge, its left end lower
    mask[40:46, 30] = mask[40:46, 36] = mask[45, 30:37] = True  # a U: two top rows
    labels, found = groups(mask)
    joined = ndimage.binary_dilation(mask, np.ones((3, 3), bool), iterations=MERGE_GAP)
    ref, count = ndimage.label(joined, structure=np.ones((3, 3), bool))
    assert len(found) == count
    np.testing.assert_array_equal(labels, ref * mask)


@pytest.mark.parametrize("seed", range(4))
def test_groups_equal_a_plain_reference_on_random_damage(seed):
    """Labels, sizes and thickness against scipy's label and Euclidean distance, group by group."""
    from scipy import ndimage

    from rnon_engine.inference.routing import MERGE_GAP

    rng = np.random.default_rng(seed)
    mask = rng.random((90, 120)) < (0.002, 0.01, 0.05, 0.2)[seed]
    mask[rng.integers(0, 90), :] = seed % 2 == 1  # a long stroke: the whole-mask transform
    mask[:3, :4] = True  # a group on the image's edge
    labels, found = groups(mask)
    eight = np.ones((3, 3), bool)
    joined = ndimage.binary_dilation(mask, eight, iterations=MERGE_GAP)
    ref, count = ndimage.label(joined, structure=eight)
    ref = ref * mask
    assert labels.dtype == np.int32 and np.array_equal(labels, ref)
    want = []
    for lab in range(1, count + 1):
        inside = ref == lab
        if not inside.any():
            continue
        depth = ndimage.distance_transform_edt(inside).max()
        t = int(round(2 * depth - 1))
        want.append((lab, int(inside.sum()), t, kind_of(int(inside.sum()), t)))
    assert [(g.label, g.pixels, g.thickness, g.kind) for g in found] == want
    kinds = classify(mask)
    assert not kinds[~mask].any()
    for g in found:
        assert (kinds[labels == g.label] == 1 + KINDS.index(g.kind)).all()


def test_biharmonic_fill_clips_to_the_plane_range_only_when_it_leaves_the_holes_neighbours():
    # The plane's known range is read only when a fill leaves the range of the known
    # pixels next to the holes; the result is the plain clip to the plane's range.
    from scipy import ndimage

    from rnon_engine.inference.sparse_biharmonic import solve_plane

    rng = np.random.default_rng(11)
    left = 0
    for trial in range(6):
        image = rng.integers(0, 256, (40, 50, 3)).astype(np.uint8)
        if trial % 2:
            image[:, :, :] = 100 + (np.arange(50) % 3 == 0)[None, :, None] * 60  # stripes
        mask = np.zeros((40, 50), bool)
        mask[5:9, 5:12] = mask[20, 30] = mask[30:35, 40:44] = True
        raw = solve_plane(image, mask)
        near = image[ndimage.binary_dilation(mask, np.ones((3, 3), bool)) & ~mask]
        left += int((raw < near.min(axis=0)).any() or (raw > near.max(axis=0)).any())
        lo, hi = image[~mask].min(axis=0), image[~mask].max(axis=0)
        want = image.copy()
        want[mask] = np.rint(np.clip(raw, lo, hi)).astype(np.uint8)
        assert np.array_equal(fill_biharmonic(image, mask), want)
    assert left  # some fills did leave their neighbours' range


@pytest.mark.parametrize("known_extreme_row", [None, 5, 599])
def test_biharmonic_clip_is_to_the_known_range_whichever_band_holds_the_extremes(
    known_extreme_row,
):
    # A tall plane (the known range is looked for a band of rows at a time): the holes
    # hold the plane's extremes, and a known pixel holds them too in the first band, the
    # last one, or nowhere. The clip is to the known pixels' range in every case; a band
    # search that took the holes' extremes for known ones fails the case without one.
    from rnon_engine.inference.sparse_biharmonic import solve_plane

    yy, xx = np.mgrid[:600, :50]
    checker = 100 + 60 * ((yy + xx) % 2)
    image = np.repeat(checker[..., None], 3, axis=2).astype(np.uint8)
    mask = np.zeros((600, 50), bool)
    mask[5:9, 5:12] = mask[300:305, 40:44] = True
    image[mask] = (0, 250, 7)
    if known_extreme_row is not None:
        image[known_extreme_row, 20] = (0, 250, 7)
    raw = solve_plane(image, mask)
    lo, hi = image[~mask].min(axis=0), image[~mask].max(axis=0)
    want = image.copy()
    want[mask] = np.rint(np.clip(raw, lo, hi)).astype(np.uint8)
    out = fill_biharmonic(image, mask)
    assert np.array_equal(out, want)
    # The fills overshoot the checkerboard's 100-160 both ways: clipped to 100-160 without
    # the known extremes, less so with them.
    assert (raw.max(axis=0) > 160).all() and (raw.min(axis=0) < 100).all()
    checker_only = image.copy()
    checker_only[mask] = np.rint(np.clip(raw, 100, 160)).astype(np.uint8)
    assert np.array_equal(out, checker_only) == (known_extreme_row is None)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_out_array_and_in_place_give_the_same_pixels(auto, dtype):
    # Every kind (the network's windows and the classical fills, in place on auto's own
    # array inside the call) and the caller's out array.
    mask, _ = one_of_each(160)
    img = picture(160, seed=4)
    img = img if dtype == np.uint8 else img.astype(np.float32) / 255
    want = auto.inpaint(img, mask)
    given = np.zeros_like(img)
    assert auto.inpaint(img, mask, out=given) is given and np.array_equal(given, want)
    assert auto.inpaint(img, mask, out=img) is img and np.array_equal(img, want)
    with pytest.raises(InputError, match="out has shape"):
        auto.inpaint(img, mask, out=img[1:])
