"""Tests of ``python -m training.evaluate`` (the paper's Table 3 protocol)."""

from __future__ import annotations

import csv
import json
import math

import cv2
import numpy as np
import pytest
import torch
from training import evaluate as ev

from rnon_engine import create_model, save_weights
from rnon_engine.nn.weights import file_sha256
from rnon_engine.train.masks import BUCKETS, load_eval_masks, make_eval_masks

SIZE = 64


def _image(seed: int, h: int = 80, w: int = 96) -> np.ndarray:
    """Smooth colour image in [0, 200] (uint8) so that +10 never clips."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    f = rng.uniform(1, 3, 3)
    img = np.stack([100 + 90 * np.sin(f[c] * 3 * x + c) * np.cos(f[c] * 2 * y) for c in range(3)])
    return np.round(np.moveaxis(img, 0, -1)).astype(np.uint8)


def _images(n: int) -> list[ev.EvalImage]:
    return [
        ev.EvalImage(f"img{i}.png", ev.prepare_image(_image(i) / 255.0, SIZE)) for i in range(n)
    ]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Three images of different kinds: RGB PNG, grayscale 16-bit TIFF, JPEG in a subfolder."""
    import tifffile

    d = tmp_path_factory.mktemp("data")
    cv2.imwrite(str(d / "a.png"), _image(0)[..., ::-1])
    tifffile.imwrite(d / "b.tif", (_image(1, 70, 120)[..., 0].astype(np.uint16) * 257))
    (d / "sub").mkdir()
    cv2.imwrite(str(d / "sub" / "c.jpg"), _image(2, 100, 64)[..., ::-1])
    (d / "notes.txt").write_text("not an image")
    return d


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Tiny random repair net, and an optimize net whose tail is not zero (not the identity)."""
    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    repair = create_model("rnon-repair", width=0.125, depth=4)
    opt = create_model("rnon-optimize", width=0.125, blocks=1)
    with torch.no_grad():
        opt.tail.weight.normal_(0, 0.05)
        opt.tail.bias.fill_(0.05)
    r = save_weights(repair, d / "repair.safetensors")
    o = save_weights(opt, d / "optimize.safetensors")
    return r, o


# ------------------------------------------------------------------------ protocol pieces


def test_prepare_image_resizes_shorter_side_and_centre_crops():
    # A 100x200 image whose columns hold their index: after resizing the shorter side to 50
    # (factor 0.5) and centre-cropping 50 of 100 columns, the crop holds the middle half.
    img = np.repeat(np.linspace(0, 1, 200, dtype=np.float32)[None, :, None], 100, 0)
    img = np.repeat(img, 3, axis=2)
    out = ev.prepare_image(img, 50)
    assert out.shape == (50, 50, 3) and out.dtype == np.uint8
    assert abs(out[25, 0, 0] / 255 - 0.25) < 0.02 and abs(out[25, -1, 0] / 255 - 0.75) < 0.02
    # An image already of the size is only quantised.
    sq = np.random.default_rng(0).random((50, 50, 3)).astype(np.float32)
    np.testing.assert_array_equal(ev.prepare_image(sq, 50), np.round(sq * 255).astype(np.uint8))
    # A small image is enlarged.
    assert ev.prepare_image(sq[:20, :30], 40).shape == (40, 40, 3)


def test_pair_index_spreads_or_cycles():
    assert [ev.pair_index(i, 3, 5) for i in range(5)] == [0, 1, 2, 0, 1]
    assert [ev.pair_index(i, 10, 4) for i in range(4)] == [0, 2, 5, 7]
    assert [ev.pair_index(i, 4, 4) for i in range(4)] == [0, 1, 2, 3]


def test_known_case_truth_and_constant_offset():
    images = _images(2)
    masks = make_eval_masks(SIZE, 2, seed=3)
    samples = ev.build_samples(images, masks)
    truths = [im.pixels for im in images]

    def oracle(damaged, hole):
        (t,) = [t for t in truths if np.array_equal(t[~hole], damaged[~hole])]
        return t.copy()

    def offset(damaged, hole):
        out = oracle(damaged, hole)
        out[hole] += 10  # truth <= 200: no overflow
        return out

    methods = [
        ev.MethodSpec("oracle", "oracle", oracle, True),
        ev.MethodSpec("offset", "offset", offset, False),
    ]
    records = ev.evaluate(samples, methods, progress=False)
    assert len(records) == 2 * len(samples)
    for r in records:
        if r.method == "oracle":
            assert r.psnr == ev.MAX_PSNR and r.ssim == pytest.approx(1.0) and r.l1 == 0.0
        else:
            # Hand computation: every hole pixel is off by 10/255 in all channels.
            mse = r.hole_ratio * (10 / 255) ** 2
            assert r.psnr == pytest.approx(10 * math.log10(1 / mse), abs=1e-9)
            assert r.l1 == pytest.approx(10 / 255, abs=1e-12)
            assert r.ssim < 1.0
        assert r.changed_outside == 0.0
    summary = ev.summarize(records)
    assert len(summary) == 2 * len(BUCKETS) * len(ev.METRICS)
    ok, short = ev.verdict(summary, "oracle", ["offset"], list(BUCKETS))
    assert ok and not short
    ok, short = ev.verdict(summary, "offset", ["oracle"], list(BUCKETS))
    assert not ok and len(short) == 2 * len(BUCKETS)


def test_every_method_gets_the_same_masks_and_images():
    samples = ev.build_samples(_images(3), make_eval_masks(SIZE, 2, seed=0))
    seen: dict[str, list[bytes]] = {}

    def recorder(key):
        def fn(damaged, hole):
            seen.setdefault(key, []).append(hole.tobytes() + damaged.tobytes())
            assert not damaged[hole].any()  # no method sees the hole's true pixels
            return damaged

        return ev.MethodSpec(key, key, fn, False)

    ev.evaluate(samples, [recorder("a"), recorder("b")], progress=False)
    assert seen["a"] == seen["b"] and len(seen["a"]) == len(samples)
    again = ev.build_samples(_images(3), make_eval_masks(SIZE, 2, seed=0))
    assert all(np.array_equal(s.hole, t.hole) for s, t in zip(samples, again, strict=True))
    other = ev.build_samples(_images(3), make_eval_masks(SIZE, 2, seed=1))
    assert not all(np.array_equal(s.hole, t.hole) for s, t in zip(samples, other, strict=True))


def test_choose_examples_starts_with_worst_and_is_deterministic():
    samples = ev.build_samples(_images(2), make_eval_masks(SIZE, 3, seed=0))

    def rec(method, s, p):
        return ev.Record(method, s.bucket, s.slot, s.image_name, 0.1, p, 0.5, 0.1, 0.0, 0.0)

    records = [rec("rnon", s, 20 + i) for i, s in enumerate(samples)]
    records[5] = rec("rnon", samples[5], 5.0)
    records += [rec("telea", s, 21 + i + (30 if i == 7 else 0)) for i, s in enumerate(samples)]
    chosen = ev.choose_examples(records, samples, "rnon", ["telea"], 6)
    assert chosen[:2] == [5, 7] and len(set(chosen)) == 6
    assert {samples[i].bucket for i in chosen} == set(BUCKETS)
    assert chosen == ev.choose_examples(records, samples, "rnon", ["telea"], 6)


# ------------------------------------------------------------------------ command line


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_cli_end_to_end(data_dir, weights, tmp_path):
    repair, optimize = weights
    out = tmp_path / "out"
    argv = [
        "--weights", str(repair), "--stage2", str(optimize), "--data", str(data_dir),
        "--size", str(SIZE), "--per-bucket", "2", "--out", str(out), "--examples", "3",
        "--compare-stage2-region", "--no-progress", "--device", "cpu",
    ]  # fmt: skip
    assert ev.main(argv) == 0
    md = (out / "results.md").read_text()
    for label in ("RNON (repair + optimize, band)", "RNON (repair + optimize, whole image",
                  "OpenCV Telea", "OpenCV Navier-Stokes", "scikit-image biharmonic"):  # fmt: skip
        assert f"| {label}" in md
    assert "beats the best classical method in both PSNR and SSIM in every bucket" in md
    assert file_sha256(repair) in md and file_sha256(optimize) in md
    rows = _read_csv(out / "results.csv")
    methods = {"rnon-band", "rnon-image", "telea", "ns", "biharmonic"}
    assert {r["method"] for r in rows} == methods
    assert len(rows) == len(methods) * len(BUCKETS) * 3
    assert all(int(r["n"]) == 2 for r in rows)
    per = _read_csv(out / "per_image.csv")
    assert len(per) == len(methods) * len(BUCKETS) * 2
    for r in per:  # the masks used lie in their buckets
        low, high = BUCKETS[r["bucket"]]
        assert low < float(r["hole_ratio"]) <= high
        # Only the paper's whole-image stage 2 may touch known pixels.
        assert (float(r["changed_outside"]) > 0) == (r["method"] == "rnon-image")
    # three images, two slots: spread pairing picks images 0 and 1 (sorted: a.png, b.tif)
    assert {r["image"] for r in per} == {"a.png", "b.tif"}
    meta = json.loads((out / "run.json").read_text())
    assert meta["n_images"] == 3 and meta["images"] == ["a.png", "b.tif", "sub/c.jpg"]
    assert meta["weights"]["repair"]["sha256"] == file_sha256(repair)
    assert meta["stage2_present"] is True and meta["command"].startswith("python -m training")
    png = cv2.imread(str(out / "examples.png"))
    assert png is not None and png.shape[0] > 200
    # The masks were saved and reload with the same content (and hashes).
    saved = load_eval_masks(out / "masks", SIZE)
    fresh = make_eval_masks(SIZE, 2, seed=0)
    assert all(
        np.array_equal(a, b) for k in BUCKETS for a, b in zip(saved[k], fresh[k], strict=True)
    )


def test_cli_repair_only_and_reused_masks(data_dir, weights, tmp_path, capsys):
    repair, _ = weights
    masks = tmp_path / "masks"
    common = ["--weights", str(repair), "--data", str(data_dir), "--size", str(SIZE),
              "--per-bucket", "4", "--masks", str(masks), "--methods", "telea",
              "--examples", "0", "--no-progress", "--device", "cpu"]  # fmt: skip
    assert ev.main([*common, "--out", str(tmp_path / "o1")]) == 0
    err = capsys.readouterr().err
    assert "no stage 2" in err  # a lone repair file: stage 2 cannot run, and it says so
    assert ev.main([*common, "--out", str(tmp_path / "o2"), "--stages", "repair"]) == 0
    p1 = _read_csv(tmp_path / "o1" / "per_image.csv")
    p2 = _read_csv(tmp_path / "o2" / "per_image.csv")
    # Same masks and images in both runs; deterministic methods give the same numbers.
    assert [(r["bucket"], r["image"], r["hole_ratio"]) for r in p1] == [
        (r["bucket"], r["image"], r["hole_ratio"]) for r in p2
    ]
    assert [r["psnr"] for r in p1] == [r["psnr"] for r in p2]
    # four slots, three images: cycled, a.png twice with different masks
    images = [r["image"] for r in p1 if r["method"] == "telea" and r["bucket"] == "0.01-0.25"]
    assert images == ["a.png", "b.tif", "sub/c.jpg", "a.png"]
    assert not (tmp_path / "o2" / "examples.png").exists()
    assert "RNON (repair only)" in (tmp_path / "o2" / "results.md").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--size", "8"], "--size"),
        (["--weights", "no-such-model"], "unknown method"),
        (["--weights", "/nonexistent/w.safetensors"], "w.safetensors"),
        (["--weights", "telea"], "classical"),
        (["--methods", "telea,foo"], "foo"),
        (["--per-bucket", "0"], "--per-bucket"),
        (["--compare-stage2-region", "--stages", "repair"], "--compare-stage2-region"),
        (["--compare-stage2-region"], "no stage 2"),
    ],
)
def test_cli_errors(data_dir, weights, tmp_path, capsys, extra, message):
    repair, _ = weights
    argv = ["--weights", str(repair), "--data", str(data_dir), "--out", str(tmp_path / "o"),
            "--size", str(SIZE), "--no-progress", "--device", "cpu", *extra]  # fmt: skip
    assert ev.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err
    assert not (tmp_path / "o" / "results.md").exists()


def test_cli_no_images(weights, tmp_path, capsys):
    repair, _ = weights
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    argv = ["--weights", str(repair), "--data", str(empty), "--out", str(tmp_path / "o")]
    assert ev.main(argv) == 2
    assert "no images found" in capsys.readouterr().err
    assert ev.main([*argv[:2], "--data", str(tmp_path / "missing"), *argv[4:]]) == 2
    assert "not a folder" in capsys.readouterr().err
