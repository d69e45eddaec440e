"""rnon-batch --estimate-error (issue 15): each plane's estimate in the output's attributes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tifffile
import zarr

from rnon_engine.batch import BatchOptions, run_batch
from rnon_engine.batch import stack as stack_module
from rnon_engine.batch.cli import build_parser, main
from rnon_engine.batch.resume import read_tiff_attrs
from rnon_engine.errors import RnonError
from rnon_engine.inference.estimate import estimate_error
from rnon_engine.inference.inpainter import Inpainter

TELEA = ["--model", "telea", "--no-progress"]


def picture(shape=(3, 48, 64), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    base = 3000 + 2000 * np.sin(xx / 7.0) * np.cos(yy / 11.0)
    return (base + rng.integers(0, 300, size=shape)).astype(np.uint16)


def holes(shape=(3, 48, 64)) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[0, 10:18, 20:30] = 1
    m[0, 30, 5:40] = 1
    m[2, 30:34, 5:9] = 1
    return m


def engine_estimates(img: np.ndarray, m: np.ndarray) -> dict[str, float]:
    inp = Inpainter.from_pretrained("telea")
    return {
        f"plane [{i}]": estimate_error(inp, img[i], m[i], seed=0, channel_axis=None)
        for i in range(img.shape[0])
        if m[i].any()
    }


def write_zarr(path, data, chunks) -> None:
    zarr.create_array(store=str(path), shape=data.shape, chunks=chunks, dtype=data.dtype)[...] = (
        data
    )


def attrs_of(path) -> dict:
    return dict(zarr.open(str(path), mode="r").attrs)["rnon_batch"]


def test_help_lists_auto_as_the_default_model_and_the_option(capsys):
    parser = build_parser()
    assert parser.get_default("model") == "auto"
    assert parser.parse_args(["x"]).estimate_error is False
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "auto|default|PATH|telea|ns|biharmonic" in text
    assert "'auto' (the default:" in text
    assert "--estimate-error" in text and "error_estimate" in text


def test_zarr_output_records_each_planes_estimate(tmp_path):
    img, m = picture(), holes()
    write_zarr(tmp_path / "in.zarr", img, (1, 48, 64))
    write_zarr(tmp_path / "m.zarr", m, (1, 48, 64))
    base = [str(tmp_path / "in.zarr"), "--mask", str(tmp_path / "m.zarr"), *TELEA]
    assert main([*base, "-o", str(tmp_path / "plain.zarr")]) == 0
    assert "error_estimate" not in attrs_of(tmp_path / "plain.zarr")
    assert main([*base, "-o", str(tmp_path / "est.zarr"), "--estimate-error"]) == 0
    # the estimate changes no pixel
    np.testing.assert_array_equal(
        zarr.open_array(str(tmp_path / "est.zarr"))[...],
        zarr.open_array(str(tmp_path / "plain.zarr"))[...],
    )
    est = attrs_of(tmp_path / "est.zarr")["error_estimate"]
    expected = engine_estimates(img, m)
    assert list(est["planes"]) == ["plane [0]", "plane [2]"]  # plane 1 has no holes
    for plane, value in expected.items():
        assert est["planes"][plane] == pytest.approx(value, rel=1e-12)
    n = {p: int(np.count_nonzero(m[int(p[7])])) for p in expected}
    assert est["hole_pixels"] == n
    pooled = math.sqrt(sum(expected[p] ** 2 * n[p] for p in n) / sum(n.values()))
    assert est["rmse"] == pytest.approx(pooled, rel=1e-12)
    assert 0 < est["rmse"] < 65535 and est["seed"] == 0
    # the same command on the finished output: nothing to do, the figures stay
    assert main([*base, "-o", str(tmp_path / "est.zarr"), "--estimate-error"]) == 0
    assert attrs_of(tmp_path / "est.zarr")["error_estimate"] == est


def test_yx_blocks_of_a_plane_are_pooled_by_hole_pixels(tmp_path):
    img, m = picture(), holes()
    write_zarr(tmp_path / "in.zarr", img, (1, 16, 16))
    write_zarr(tmp_path / "m.zarr", m, (1, 16, 16))
    out = tmp_path / "out.zarr"
    cmd = [str(tmp_path / "in.zarr"), "--mask", str(tmp_path / "m.zarr"), "-o", str(out)]
    assert main([*cmd, "--max-block-mb", "0.001", "--halo", "8", "--estimate-error", *TELEA]) == 0
    est = attrs_of(out)["error_estimate"]
    assert len(est["by_block"]) > 2  # plane 0's holes span several blocks
    assert est["hole_pixels"] == {
        "plane [0]": int(m[0].sum()),
        "plane [2]": int(m[2].sum()),
    }
    rows = [r for rs in est["by_block"].values() for r in rs if r[0] == "plane [0]"]
    assert len(rows) > 1
    pooled = math.sqrt(sum(r * r * k for _, r, k in rows) / sum(k for _, _, k in rows))
    assert est["planes"]["plane [0]"] == pytest.approx(pooled)


def test_tiff_output_carries_the_estimate(tmp_path):
    img, m = picture(), holes()
    tifffile.imwrite(tmp_path / "in.tif", img, photometric="minisblack")
    tifffile.imwrite(tmp_path / "m.tif", m, photometric="minisblack")
    out = tmp_path / "out.tif"
    args = [str(tmp_path / "in.tif"), "--mask", str(tmp_path / "m.tif"), "-o", str(out)]
    assert main([*args, "--estimate-error", *TELEA]) == 0
    est = read_tiff_attrs(out)["error_estimate"]
    for plane, value in engine_estimates(img, m).items():
        assert est["planes"][plane] == pytest.approx(value, rel=1e-12)


def test_interrupted_run_resumes_with_the_estimates_of_done_blocks(tmp_path, monkeypatch):
    img, m = picture(), holes()
    write_zarr(tmp_path / "in.zarr", img, (1, 48, 64))
    write_zarr(tmp_path / "m.zarr", m, (1, 48, 64))
    opts = dict(
        input=str(tmp_path / "in.zarr"),
        mask=str(tmp_path / "m.zarr"),
        output=str(tmp_path / "out.zarr"),
        model="telea",
        threads=1,
        progress=False,
        estimate_error=True,
    )
    real = stack_module.process_block
    calls: list[int] = []

    def dies_after_one(job, block):
        if calls:
            raise KeyboardInterrupt("test stop")
        calls.append(block.index)
        return real(job, block)

    monkeypatch.setattr(stack_module, "process_block", dies_after_one)
    with pytest.raises((KeyboardInterrupt, RnonError)):
        run_batch(BatchOptions(**opts))
    assert len(calls) == 1
    monkeypatch.setattr(stack_module, "process_block", real)
    second = run_batch(BatchOptions(**opts))
    assert second.skipped == 1  # the block done before the stop is not redone
    est = attrs_of(tmp_path / "out.zarr")["error_estimate"]
    expected = engine_estimates(img, m)
    assert est["planes"] == {p: pytest.approx(v, rel=1e-12) for p, v in expected.items()}


def test_changed_mask_keeps_the_other_planes_estimates(tmp_path):
    img, m = picture(), holes()
    write_zarr(tmp_path / "in.zarr", img, (1, 48, 64))
    write_zarr(tmp_path / "m.zarr", m, (1, 48, 64))
    opts = dict(
        input=str(tmp_path / "in.zarr"),
        mask=str(tmp_path / "m.zarr"),
        output=str(tmp_path / "out.zarr"),
        model="telea",
        progress=False,
        estimate_error=True,
    )
    run_batch(BatchOptions(**opts))
    m[2, 40:44, 50:60] = 1
    zarr.open_array(str(tmp_path / "m.zarr"), mode="r+")[...] = m
    report = run_batch(BatchOptions(**opts))
    assert report.mask_changed == 1 and report.computed == 1
    est = attrs_of(tmp_path / "out.zarr")["error_estimate"]
    expected = engine_estimates(img, m)
    assert est["planes"] == {p: pytest.approx(v, rel=1e-12) for p, v in expected.items()}


def test_folder_of_images_records_each_files_estimate_in_the_manifest(tmp_path, monkeypatch):
    import json

    import imageio.v3 as iio

    from rnon_engine.batch import folder as folder_module

    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    pics = {"a.png": picture((48, 64), seed=1), "b.png": picture((48, 64), seed=2)}
    masks = {"a.png": holes()[0], "b.png": holes()[2]}
    for name, im in pics.items():
        iio.imwrite(tmp_path / "img" / name, im)
        iio.imwrite(tmp_path / "msk" / name, masks[name] * 255)
    out = tmp_path / "out"
    opts = dict(
        input=str(tmp_path / "img"),
        mask=str(tmp_path / "msk"),
        output=str(out),
        model="telea",
        threads=1,
        progress=False,
        estimate_error=True,
    )
    # stopped after the first file: the same command resumes and keeps its figures
    real = folder_module.process_file
    calls: list[str] = []

    def dies_after_one(job, pair):
        if calls:
            raise KeyboardInterrupt("test stop")
        calls.append(pair[0])
        return real(job, pair)

    monkeypatch.setattr(folder_module, "process_file", dies_after_one)
    with pytest.raises((KeyboardInterrupt, RnonError)):
        run_batch(BatchOptions(**opts))
    monkeypatch.setattr(folder_module, "process_file", real)
    assert run_batch(BatchOptions(**opts)).skipped == 1
    est = json.loads((out / ".rnon-batch.json").read_text())["rnon_batch"]["error_estimate"]
    inp = Inpainter.from_pretrained("telea")
    expected = {
        name: estimate_error(inp, pics[name], masks[name], seed=0, channel_axis=None)
        for name in pics
    }
    assert list(est["files"]) == ["a.png", "b.png"]
    for name, value in expected.items():
        assert est["files"][name]["planes"] == {"the image": pytest.approx(value, rel=1e-12)}
    n = {name: int(np.count_nonzero(masks[name])) for name in pics}
    pooled = math.sqrt(sum(expected[k] ** 2 * n[k] for k in n) / sum(n.values()))
    assert est["rmse"] == pytest.approx(pooled, rel=1e-12)
    assert not (out / ".rnon-batch").exists()  # the figures' folder goes when done
    assert sorted(p.name for p in out.iterdir()) == [".rnon-batch.json", "a.png", "b.png"]


def test_single_image_file_records_its_estimate(tmp_path):
    import json

    import imageio.v3 as iio

    im = picture((48, 64))
    iio.imwrite(tmp_path / "a.png", im)
    iio.imwrite(tmp_path / "m.png", holes()[0] * 255)
    out = tmp_path / "out.png"
    args = [str(tmp_path / "a.png"), "--mask", str(tmp_path / "m.png"), "-o", str(out)]
    assert main([*args, "--estimate-error", *TELEA]) == 0
    manifest = json.loads((tmp_path / "out.png.rnon-batch.json").read_text())
    est = manifest["rnon_batch"]["error_estimate"]
    truth = estimate_error(
        Inpainter.from_pretrained("telea"), im, holes()[0], seed=0, channel_axis=None
    )
    assert est["rmse"] == pytest.approx(truth, rel=1e-12)
    assert est["files"]["out.png"]["hole_pixels"] == {"the image": int(holes()[0].sum())}
    assert not (tmp_path / "out.png.rnon-batch").exists()
