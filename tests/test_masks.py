from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from rnon_engine.errors import InputError
from rnon_engine.train.masks import (
    BUCKETS,
    bucket_mask,
    fine_damage_mask,
    free_form_mask,
    get_eval_masks,
    hole_ratio,
    load_eval_masks,
    load_mask,
    make_eval_masks,
    mask_sha256,
    random_mask,
    save_eval_masks,
    save_mask,
    to_valid,
)


def test_buckets_are_the_papers():
    assert list(BUCKETS.values()) == [(0.01, 0.25), (0.25, 0.40), (0.40, 0.50), (0.50, 0.60)]


@pytest.mark.parametrize("name", list(BUCKETS))
def test_bucket_presets_land_in_their_bucket(name):
    low, high = BUCKETS[name]
    for seed in range(8):
        m = bucket_mask((96, 128), np.random.default_rng(seed), name)
        assert m.shape == (96, 128) and m.dtype == bool
        assert low < hole_ratio(m) <= high


def test_seeded_masks_are_reproducible_and_vary_with_seed():
    a = random_mask(64, np.random.default_rng(7))
    b = random_mask(64, np.random.default_rng(7))
    c = random_mask(64, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_random_mask_ratio_range_and_spread():
    ratios = [hole_ratio(random_mask(64, np.random.default_rng(s), (0.1, 0.5))) for s in range(40)]
    assert all(0.1 < r <= 0.5 for r in ratios)
    assert min(ratios) < 0.2 and max(ratios) > 0.4  # spread over the range, not one value


def test_masks_are_not_single_blocks():
    # Free-form: several connected parts or thin strokes, not one filled rectangle.
    import cv2

    m = bucket_mask(128, np.random.default_rng(3), "0.25-0.40")
    n_parts, _ = cv2.connectedComponents(m.astype(np.uint8))
    eroded = cv2.erode(m.astype(np.uint8), np.ones((9, 9), np.uint8))
    assert n_parts > 2 or eroded.sum() < 0.5 * m.sum()


def test_narrow_range_on_tiny_mask_terminates_or_refuses():
    # 7x9 = 63 pixels: (0.30, 0.40] holds 19..25 pixels -> reachable with single pixels.
    m = free_form_mask((7, 9), np.random.default_rng(0), (0.3, 0.4))
    assert 0.3 < hole_ratio(m) <= 0.4
    # (0.50, 0.51] holds no pixel count of 10 pixels -> refused up front, clearly.
    with pytest.raises(InputError, match="narrower than one pixel"):
        free_form_mask((2, 5), np.random.default_rng(0), (0.5, 0.51))


@pytest.mark.parametrize("bad", [(0.5, 0.4), (-0.1, 0.2), (0.2, 1.5), "abc"])
def test_bad_ranges_are_refused(bad):
    with pytest.raises(InputError):
        free_form_mask(32, np.random.default_rng(0), bad)


def test_unknown_bucket_names_known_ones():
    with pytest.raises(InputError, match="0.01-0.25"):
        bucket_mask(32, np.random.default_rng(0), "huge")


def test_to_valid_is_the_network_convention():
    hole = np.array([[True, False], [False, True]])
    v = to_valid(hole)
    assert v.dtype == np.float32
    np.testing.assert_array_equal(v, [[0, 1], [1, 0]])
    np.testing.assert_array_equal(to_valid(np.array([[0, 3]], np.uint8)), [[1, 0]])


def test_eval_set_is_stable_when_enlarged():
    small = make_eval_masks(48, 2, seed=5)
    large = make_eval_masks(48, 3, seed=5)
    for name in BUCKETS:
        assert len(small[name]) == 2 and len(large[name]) == 3
        for a, b in zip(small[name], large[name][:2], strict=True):
            np.testing.assert_array_equal(a, b)
        low, high = BUCKETS[name]
        assert all(low < hole_ratio(m) <= high for m in large[name])


def test_eval_set_round_trip(tmp_path):
    masks = make_eval_masks((40, 56), 2, seed=1)
    manifest = save_eval_masks(tmp_path / "ev", masks, seed=1)
    meta = json.loads(manifest.read_text())
    assert meta["seed"] == 1 and meta["size"] == [40, 56] and meta["per_bucket"] == 2
    entry = meta["buckets"]["0.25-0.40"]["masks"][0]
    assert entry["sha256"] == mask_sha256(masks["0.25-0.40"][0])
    assert entry["ratio"] == pytest.approx(hole_ratio(masks["0.25-0.40"][0]))
    loaded = load_eval_masks(tmp_path / "ev", expected_size=(40, 56))
    for name in BUCKETS:
        for a, b in zip(masks[name], loaded[name], strict=True):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match=r"\(40, 56\)"):
        load_eval_masks(tmp_path / "ev", expected_size=64)


def test_eval_set_detects_tampering(tmp_path):
    save_eval_masks(tmp_path, make_eval_masks(32, 1, seed=0), seed=0)
    path = tmp_path / "0.40-0.50" / "0000.png"
    arr = np.asarray(Image.open(path)).copy()
    arr[0, 0] = 255 - arr[0, 0]
    Image.fromarray(arr).save(path)
    with pytest.raises(InputError, match="hash"):
        load_eval_masks(tmp_path)


def test_get_eval_masks_builds_then_reuses_and_refuses_mismatch(tmp_path):
    folder = tmp_path / "ev"
    first = get_eval_masks(folder, 32, 2, seed=3)
    mtime = (folder / "manifest.json").stat().st_mtime_ns
    again = get_eval_masks(folder, 32, 1, seed=3)  # fewer: reused and trimmed
    assert (folder / "manifest.json").stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(first["0.01-0.25"][0], again["0.01-0.25"][0])
    assert len(again["0.01-0.25"]) == 1
    with pytest.raises(InputError, match="seed=3"):
        get_eval_masks(folder, 32, 2, seed=4)


@pytest.mark.parametrize("ext", [".png", ".tif", ".npy"])
def test_mask_files_nonzero_is_hole(tmp_path, ext):
    data = np.zeros((5, 6), np.uint8)
    data[1, 2] = 1
    data[3, 4] = 200
    path = tmp_path / f"m{ext}"
    if ext == ".png":
        Image.fromarray(data).save(path)
    elif ext == ".tif":
        tifffile.imwrite(path, data.astype(np.uint16))
    else:
        np.save(path, data.astype(np.int32))
    m = load_mask(path, expected_shape=(5, 6))
    assert m.dtype == bool
    np.testing.assert_array_equal(m, data != 0)
    with pytest.raises(InputError) as err:
        load_mask(path, expected_shape=(6, 5))
    assert "(5, 6)" in str(err.value) and "(6, 5)" in str(err.value)


def test_rgb_mask_file_any_colour_channel(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0, 0, 2] = 255
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 255  # opaque black: no hole
    rgba[1, 1, :3] = 255
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert load_mask(tmp_path / "rgb.png").sum() == 1
    m = load_mask(tmp_path / "rgba.png")
    assert m.sum() == 1 and m[1, 1]


def test_mask_file_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_mask(tmp_path / "none.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="Could not read"):
        load_mask(tmp_path / "bad.png")
    with pytest.raises(InputError, match="unsupported"):
        load_mask(tmp_path / "m.jpg")
    np.save(tmp_path / "3d.npy", np.zeros((2, 3, 5, 5)))
    with pytest.raises(InputError, match="2-D"):
        load_mask(tmp_path / "3d.npy")


@pytest.mark.parametrize("ext", [".png", ".tif", ".npy"])
def test_save_mask_round_trip(tmp_path, ext):
    m = random_mask((20, 30), np.random.default_rng(1))
    path = save_mask(tmp_path / f"m{ext}", m)
    np.testing.assert_array_equal(load_mask(path, (20, 30)), m)


@pytest.mark.parametrize("seed", range(6))
def test_fine_damage_is_fine_in_range_and_seeded(seed):
    from scipy import ndimage

    m = fine_damage_mask((192, 160), np.random.default_rng(seed))
    assert m.shape == (192, 160) and m.dtype == bool
    assert 0.002 < hole_ratio(m) <= 0.03
    # Fine: no hole pixel lies farther than ~4 px from a known one (dust of radius <= 4,
    # scratches <= 3 px wide; overlaps add little).
    assert ndimage.distance_transform_edt(m).max() <= 5
    np.testing.assert_array_equal(m, fine_damage_mask((192, 160), np.random.default_rng(seed)))


def test_fine_damage_range_is_checked():
    with pytest.raises(InputError):
        fine_damage_mask(64, np.random.default_rng(0), (0.03, 0.01))
