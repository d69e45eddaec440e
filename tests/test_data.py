from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from torch.utils.data import DataLoader

from rnon_engine.errors import InputError
from rnon_engine.train.data import (
    CropSchedule,
    ImageFolderDataset,
    InpaintingDataset,
    SampleKey,
    TrainBatchSampler,
    balanced_sampler,
    read_image,
    source_weights,
    to_unit_float,
)


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "imgs"
    (root / "a" / "deep").mkdir(parents=True)
    (root / "b").mkdir()
    Image.fromarray(_rgb(40, 50, 1)).save(root / "a" / "x.png")
    Image.fromarray(_rgb(30, 70, 2)).save(root / "a" / "deep" / "y.jpg", quality=95)
    tifffile.imwrite(root / "a" / "z16.tif", np.full((20, 24, 3), 65535, np.uint16))
    Image.fromarray(_rgb(25, 25, 3)[..., 0]).save(root / "b" / "gray.png")
    rgba = np.dstack([_rgb(32, 32, 4), np.full((32, 32), 255, np.uint8)])
    rgba[:, :16, 3] = 0  # left half transparent
    Image.fromarray(rgba, "RGBA").save(root / "b" / "rgba.png")
    Image.fromarray(_rgb(36, 36, 5)).save(root / "b" / "w.webp", lossless=True)
    (root / "b" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "b" / "notes.txt").write_text("not an image")
    Image.fromarray(_rgb(20, 20, 6)).save(root / "top.png")
    return root


def test_read_image_rules(folder, tmp_path):
    x = read_image(folder / "a" / "x.png")
    assert x.shape == (40, 50, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x * 255, np.asarray(Image.open(folder / "a" / "x.png")), atol=1e-3)
    g = read_image(folder / "b" / "gray.png")
    assert g.shape == (25, 25, 3)
    np.testing.assert_array_equal(g[..., 0], g[..., 2])  # gray replicated
    assert read_image(folder / "a" / "z16.tif").max() == 1.0  # 16-bit / 65535
    # 16-bit PNG stays 16-bit: 1000 / 65535, not rounded to 8 bits.
    cv2.imwrite(str(tmp_path / "p16.png"), np.full((4, 4), 1000, np.uint16))
    np.testing.assert_allclose(read_image(tmp_path / "p16.png"), 1000 / 65535, rtol=1e-6)
    # Channel-first TIFF is moved to channels-last; RGB order is kept.
    chw = np.zeros((3, 8, 9), np.uint8)
    chw[0] = 255
    tifffile.imwrite(tmp_path / "chw.tif", chw, photometric="rgb", planarconfig="separate")
    c = read_image(tmp_path / "chw.tif")
    assert c.shape == (8, 9, 3) and c[..., 0].min() == 1.0 and c[..., 1:].max() == 0.0
    with pytest.raises(InputError, match="corrupt.png"):
        read_image(folder / "b" / "corrupt.png")


def test_to_unit_float_rules():
    np.testing.assert_allclose(to_unit_float(np.array([0, 255], np.uint8)), [0, 1])
    np.testing.assert_allclose(to_unit_float(np.array([0, 65535], np.uint16)), [0, 1])
    np.testing.assert_allclose(to_unit_float(np.array([0.2, 0.5])), [0.2, 0.5])
    np.testing.assert_allclose(to_unit_float(np.array([10.0, 20.0, 30.0])), [0, 0.5, 1])
    np.testing.assert_allclose(to_unit_float(np.array([True, False])), [1, 0])


def test_dataset_lists_recursively_and_skips_corrupt(folder, caplog):
    with caplog.at_level(logging.WARNING, logger="rnon_engine.train.data"):
        ds = ImageFolderDataset(folder, crop_size=16)
    names = sorted(p.name for p in ds.paths)
    assert names == ["gray.png", "rgba.png", "top.png", "w.webp", "x.png", "y.jpg", "z16.tif"]
    assert any("corrupt.png" in r.getMessage() for r in caplog.records)
    assert sorted(set(ds.sources)) == ["(root)", "a", "b"]


def test_crops_shape_dtype_range(folder):
    ds = ImageFolderDataset(folder, crop_size=24)
    for i in range(len(ds)):
        s = ds[i]
        assert s["image"].shape == (3, 24, 24) and s["image"].dtype == torch.float32
        assert s["valid_target"].shape == (1, 24, 24)
        assert 0.0 <= s["image"].min() and s["image"].max() <= 1.0
    # Same key -> same crop; another epoch -> another crop.
    np.testing.assert_array_equal(ds[0]["image"], ds[0]["image"])
    a = ds[0]["image"].clone()
    ds.set_epoch(1)
    assert not torch.equal(a, ds[0]["image"])


def test_small_image_is_reflect_padded(tmp_path):
    Image.fromarray(_rgb(10, 12, 9)).save(tmp_path / "s.png")
    ds = ImageFolderDataset(tmp_path, crop_size=32, scale_jitter=None, hflip=False)
    s = ds[0]
    assert s["image"].shape == (3, 32, 32)
    assert s["valid_target"].min() == 1.0  # mirrored pixels count as real
    # Every crop value comes from the image (symmetric padding copies pixels).
    img = read_image(tmp_path / "s.png")
    assert set(np.unique(s["image"].numpy())) <= set(np.unique(img))


def test_no_jitter_no_flip_crop_is_exact_window(tmp_path):
    img = _rgb(40, 50, 3)
    Image.fromarray(img).save(tmp_path / "i.png")
    ds = ImageFolderDataset(tmp_path, crop_size=16, scale_jitter=None, hflip=False)
    crop = (ds[SampleKey(0, 123, 16)]["image"].numpy().transpose(1, 2, 0) * 255).round()
    found = any(
        np.array_equal(crop, img[y : y + 16, x : x + 16]) for y in range(25) for x in range(35)
    )
    assert found


def test_rgba_transparent_pixels_are_excluded(tmp_path):
    rgba = np.dstack([_rgb(32, 32, 4), np.full((32, 32), 255, np.uint8)])
    rgba[:, :16, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    ds = ImageFolderDataset(tmp_path, crop_size=32, scale_jitter=None, hflip=False)
    vt = ds[0]["valid_target"][0].numpy()
    np.testing.assert_array_equal(vt[:, :16], 0)
    np.testing.assert_array_equal(vt[:, 16:], 1)


def test_set_crop_size_and_sample_key(folder):
    ds = ImageFolderDataset(folder, crop_size=16)
    ds.set_crop_size(40)
    assert ds[1]["image"].shape == (3, 40, 40)
    assert ds[SampleKey(1, 5, 20)]["image"].shape == (3, 20, 20)
    with pytest.raises(InputError):
        ds.set_crop_size(2)


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "readme.txt").write_text("x")
    with pytest.raises(InputError) as err:
        ImageFolderDataset(tmp_path)
    assert str(tmp_path) in str(err.value) and ".png" in str(err.value)
    with pytest.raises(InputError, match="does not exist"):
        ImageFolderDataset(tmp_path / "missing")


def test_file_failing_at_decode_is_replaced_with_warning(tmp_path, caplog):
    Image.fromarray(_rgb(20, 20, 1)).save(tmp_path / "a.png")
    Image.fromarray(_rgb(20, 20, 2)).save(tmp_path / "b.png")
    ds = ImageFolderDataset(tmp_path, crop_size=8)
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(data[:60])  # header intact, pixels truncated
    with caplog.at_level(logging.WARNING, logger="rnon_engine.train.data"):
        s = ds[0]
    assert s["index"] == 1
    assert any("a.png" in r.getMessage() for r in caplog.records)


def test_balanced_weights_equal_per_source(folder):
    ds = ImageFolderDataset(folder, crop_size=8)
    w = source_weights(ds)
    assert w.sum() == pytest.approx(1.0)
    per = {s: w[[i for i, t in enumerate(ds.sources) if t == s]].sum() for s in set(ds.sources)}
    for v in per.values():
        assert v == pytest.approx(1 / 3)
    uniform = source_weights(ds, power=0.0)
    np.testing.assert_allclose(uniform, 1 / len(ds))
    sampler = balanced_sampler(ds, num_samples=3000, generator=torch.Generator().manual_seed(0))
    drawn = [ds.sources[i] for i in sampler]
    for s in set(ds.sources):
        assert abs(drawn.count(s) / 3000 - 1 / 3) < 0.05


def test_crop_schedule():
    sched = CropSchedule({0: 64, 100: 128, 300: 256})
    assert [sched.size_at(s) for s in (0, 99, 100, 299, 300, 10**6)] == [64, 64, 128, 128, 256, 256]
    assert CropSchedule(96).size_at(5) == 96
    with pytest.raises(InputError, match="step 0"):
        CropSchedule({10: 64})


def test_train_batch_sampler_is_seeded_resumable_and_scheduled():
    sched = CropSchedule({0: 16, 3: 24})
    full = list(TrainBatchSampler(10, 4, sched, seed=1, max_steps=6))
    resumed = list(TrainBatchSampler(10, 4, sched, seed=1, start_step=3, max_steps=6))
    assert resumed == full[3:]
    assert {k.crop_size for b in full[:3] for k in b} == {16}
    assert {k.crop_size for b in full[3:] for k in b} == {24}
    weights = np.zeros(10)
    weights[7] = 1.0
    only7 = TrainBatchSampler(10, 5, 16, weights=weights, max_steps=2)
    assert {k.index for b in only7 for k in b} == {7}


def test_loader_with_workers_matches_in_process(folder):
    ds = InpaintingDataset(ImageFolderDataset(folder, crop_size=16))
    sampler = TrainBatchSampler(len(ds), 3, CropSchedule({0: 16, 1: 24}), seed=2, max_steps=2)
    direct = [torch.stack([ds[k]["image"] for k in b]) for b in sampler]
    loader = DataLoader(ds, batch_sampler=sampler, num_workers=2)
    batches = list(loader)
    assert batches[0]["image"].shape == (3, 3, 16, 16)
    assert batches[1]["image"].shape == (3, 3, 24, 24)
    for b, d in zip(batches, direct, strict=True):
        torch.testing.assert_close(b["image"], d)


def test_inpainting_pairs_and_exclude_masks(tmp_path):
    root = tmp_path / "img"
    root.mkdir()
    Image.fromarray(_rgb(32, 32, 1)).save(root / "p.png")
    ex = tmp_path / "ex"
    ex.mkdir()
    bad = np.zeros((32, 32), bool)
    bad[:, 20:] = True
    np.save(ex / "p.npy", bad)
    ds = InpaintingDataset(
        ImageFolderDataset(root, crop_size=32, scale_jitter=None, hflip=False, exclude_dir=ex),
        ratio_range=(0.2, 0.3),
    )
    s = ds[SampleKey(0, 11, 32)]
    assert set(s) >= {"image", "hole", "mask", "valid_target"}
    ratio = s["hole"].mean().item()
    assert 0.2 < ratio <= 0.3
    vt = s["valid_target"][0].numpy()
    np.testing.assert_array_equal(vt[:, 20:], 0)
    np.testing.assert_array_equal(vt[:, :20], 1)
    # Excluded pixels are never known input; generated holes are not either.
    torch.testing.assert_close(s["mask"], (1 - s["hole"]) * s["valid_target"])
    # Same key -> same mask (reproducible); another seed -> another mask.
    torch.testing.assert_close(ds[SampleKey(0, 11, 32)]["hole"], s["hole"])
    assert not torch.equal(ds[SampleKey(0, 12, 32)]["hole"], s["hole"])


def test_fine_damage_probability(tmp_path):
    root = tmp_path / "img"
    root.mkdir()
    Image.fromarray(_rgb(64, 64, 1)).save(root / "p.png")
    images = ImageFolderDataset(root, crop_size=64, scale_jitter=None, hflip=False)
    plain = InpaintingDataset(images, ratio_range=(0.2, 0.3))
    never = InpaintingDataset(images, ratio_range=(0.2, 0.3), fine_damage=0.0)
    always = InpaintingDataset(images, ratio_range=(0.2, 0.3), fine_damage=1.0)
    half = InpaintingDataset(images, ratio_range=(0.2, 0.3), fine_damage=0.5)
    fine = 0
    for seed in range(40):
        key = SampleKey(0, seed, 64)
        # Probability 0 draws exactly the masks drawn without the option.
        torch.testing.assert_close(never[key]["hole"], plain[key]["hole"])
        assert 0.002 < always[key]["hole"].mean().item() <= 0.03
        r = half[key]["hole"].mean().item()
        assert 0.002 < r <= 0.03 or 0.2 < r <= 0.3
        fine += r <= 0.03
    assert 10 <= fine <= 30
    with pytest.raises(InputError, match="fine_damage"):
        InpaintingDataset(images, fine_damage=1.5)


def test_exclude_mask_shape_mismatch_is_refused(tmp_path):
    root = tmp_path / "img"
    root.mkdir()
    Image.fromarray(_rgb(32, 32, 1)).save(root / "p.png")
    ex = tmp_path / "ex"
    ex.mkdir()
    np.save(ex / "p.npy", np.zeros((16, 32), bool))
    with pytest.raises(InputError, match=r"\(16, 32\).*\(32, 32\)"):
        ImageFolderDataset(root, exclude_dir=ex)
