"""rnon-batch: every input form, masks, OME round trip, overwrite/resume, bad inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from rnon_engine.batch.axes import default_axes
from rnon_engine.batch.cli import build_parser, main
from rnon_engine.batch.io import describe_input
from rnon_engine.batch.masks import describe_mask
from rnon_engine.batch.plan import make_blocks, scan_holes
from rnon_engine.inference.inpainter import Inpainter

RNG = np.random.default_rng(0)
TELEA = ["--model", "telea", "--no-progress"]


def stack(shape=(3, 48, 64), dtype=np.uint16) -> np.ndarray:
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    base = (yy * 40 + xx * 25).astype(np.float64)
    out = base + RNG.integers(0, 200, size=shape)
    return out.astype(dtype)


def yx_mask(h=48, w=64) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[10:18, 20:30] = 1
    m[30:34, 5:9] = 255
    return m


def reference(image: np.ndarray, mask: np.ndarray, **kw) -> np.ndarray:
    """What the engine gives plane by plane (the batch must equal it)."""
    inp = Inpainter.from_pretrained("telea")
    out = image.copy()
    for idx in np.ndindex(*image.shape[:-2]):
        m = mask if mask.ndim == 2 else mask[idx]
        if m.any():
            out[idx] = inp.inpaint(image[idx], m, channel_axis=None)
    return out


def zarr_array(path: Path, data: np.ndarray, chunks, zarr_format=3) -> None:
    z = zarr.create_array(
        store=str(path), shape=data.shape, chunks=chunks, dtype=data.dtype, zarr_format=zarr_format
    )
    z[...] = data


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# --------------------------------------------------------------------------- forms


def test_zarr_v3_array_with_broadcast_2d_mask(tmp_path):
    img, m = stack(), yx_mask()
    zarr_array(tmp_path / "in.zarr", img, (1, 16, 32))
    zarr_array(tmp_path / "m.zarr", m, (48, 64))
    out = tmp_path / "out.zarr"
    assert (
        main(
            [str(tmp_path / "in.zarr"), "--mask", str(tmp_path / "m.zarr"), "-o", str(out), *TELEA]
        )
        == 0
    )
    z = zarr.open_array(str(out))
    assert z.shape == img.shape and z.dtype == img.dtype and z.chunks == (1, 16, 32)
    res = z[...]
    hole = m > 0
    assert np.array_equal(res[:, ~hole], img[:, ~hole])
    assert np.array_equal(res, reference(img, m))
    attrs = dict(z.attrs)["rnon_batch"]
    assert attrs["complete"] is True
    assert attrs["model"]["method"] == "telea"
    assert attrs["package_version"]
    assert "--mask" in attrs["arguments"] and attrs["date"]
    assert not (out / ".rnon-batch").exists()  # markers removed once complete


def test_zarr_v2_group_full_mask_and_hole_free_blocks_copied(tmp_path):
    img = stack((4, 40, 50))
    m = np.zeros(img.shape, np.uint8)
    m[1, 5:12, 5:15] = 1
    m[3, 20:25, 30:40] = 1
    g = zarr.open_group(str(tmp_path / "in.zarr"), mode="w", zarr_format=2)
    g.create_array("raw", shape=img.shape, chunks=(2, 40, 50), dtype=img.dtype)[...] = img
    zarr_array(tmp_path / "m.zarr", m, (1, 40, 50), zarr_format=2)
    info = describe_input(tmp_path / "in.zarr")
    mi = describe_mask(tmp_path / "m.zarr", info)
    plan = scan_holes(info, mi, make_blocks(info))
    assert [b.hole_planes for b in plan.blocks] == [1, 1]
    out = tmp_path / "out.zarr"
    assert (
        main(
            [str(tmp_path / "in.zarr"), "--mask", str(tmp_path / "m.zarr"), "-o", str(out), *TELEA]
        )
        == 0
    )
    og = zarr.open_group(str(out), mode="r")
    assert og.metadata.zarr_format == 2
    arr = og["raw"]
    assert arr.chunks == (2, 40, 50)
    assert np.array_equal(arr[...], reference(img, m))
    assert dict(og.attrs)["rnon_batch"]["complete"]


def _write_ome(path: Path, img: np.ndarray, axes: str, fmt: str = "0.5") -> None:
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    f = FormatV05() if fmt == "0.5" else FormatV04()
    g = zarr.open_group(str(path), mode="w", zarr_format=f.zarr_format)
    scale = [1.0] * img.ndim
    scale[-1] = scale[-2] = 0.5
    write_image(
        img,
        g,
        axes=axes,
        fmt=f,
        scale_factors=[2, 4],
        storage_options={"chunks": (1, 1, 16, 16)[-img.ndim :]},
        coordinate_transformations=None,
    )


@pytest.mark.parametrize("fmt", ["0.5", "0.4"])
def test_ome_zarr_round_trip(tmp_path, fmt):
    from ome_zarr.dask_utils import resize
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    img = stack((2, 3, 48, 64))  # c z y x
    m = yx_mask()
    src = tmp_path / "in.ome.zarr"
    _write_ome(src, img, "czyx", fmt)
    zarr_array(tmp_path / "m.zarr", m, (48, 64))
    out = tmp_path / "out.ome.zarr"
    assert main([str(src), "--mask", str(tmp_path / "m.zarr"), "-o", str(out), *TELEA]) == 0
    nin = list(Reader(parse_url(str(src)))())[0]
    nout = list(Reader(parse_url(str(out)))())[0]
    assert nout.metadata["axes"] == nin.metadata["axes"]
    assert nout.metadata["coordinateTransformations"] == nin.metadata["coordinateTransformations"]
    assert len(nout.data) == len(nin.data) == 3
    for a, b in zip(nin.data, nout.data, strict=False):
        assert a.shape == b.shape and a.dtype == b.dtype and a.chunksize == b.chunksize
    level0 = np.asarray(nout.data[0])
    assert np.array_equal(level0, reference(img, m))  # channels one by one
    # lower levels are downsampled from the repaired level 0 (ome-zarr's default method)
    expect1 = resize(
        nout.data[0],
        nin.data[1].shape,
        order=1,
        mode="reflect",
        anti_aliasing=True,
        preserve_range=True,
    )
    expect1 = np.clip(np.round(np.asarray(expect1)), 0, 65535).astype(img.dtype)
    assert np.array_equal(np.asarray(nout.data[1]), expect1)
    attrs = dict(zarr.open_group(str(out), mode="r").attrs)
    assert attrs["rnon_batch"]["complete"] and attrs["rnon_batch"]["axes"] == "CZYX"
    # --axes contradicting OME metadata is refused
    assert (
        main(
            [
                str(src),
                "--mask",
                str(tmp_path / "m.zarr"),
                "-o",
                str(tmp_path / "x.zarr"),
                "--axes",
                "TZYX",
                *TELEA,
            ]
        )
        == 2
    )
    assert not (tmp_path / "x.zarr").exists()


def test_bare_command_uses_labels_repair_and_default_output(tmp_path):
    from ome_zarr.writer import write_labels

    img = stack((2, 48, 64))
    src = tmp_path / "stack.zarr"
    _write_ome(src, img, "zyx")
    m = yx_mask()
    write_labels(m, zarr.open_group(str(src), mode="r+"), name="repair", axes="yx")
    assert main([str(src), *TELEA]) == 0
    out = tmp_path / "stack.repaired.zarr"
    level0 = zarr.open_group(str(out), mode="r")["s0"][...]
    assert np.array_equal(level0, reference(img, m))


def test_no_mask_anywhere_is_a_clear_error(tmp_path, capsys):
    zarr_array(tmp_path / "in.zarr", stack(), (1, 48, 64))
    assert main([str(tmp_path / "in.zarr"), *TELEA]) == 2
    assert "--mask" in capsys.readouterr().err
    assert not (tmp_path / "in.repaired.zarr").exists()


@pytest.mark.parametrize("ome", [False, True])
def test_tiff_to_tiff_keeps_tiles_and_axes(tmp_path, ome):
    img, m = stack((3, 50, 70)), yx_mask(50, 70)
    name = "in.ome.tif" if ome else "in.tif"
    kw = {"metadata": {"axes": "ZYX"}} if ome else {}
    tifffile.imwrite(
        tmp_path / name, img, tile=(32, 32), compression="zlib", photometric="minisblack", **kw
    )
    tifffile.imwrite(tmp_path / "m.tif", m)
    out = tmp_path / ("out.ome.tif" if ome else "out.tif")
    assert (
        main([str(tmp_path / name), "--mask", str(tmp_path / "m.tif"), "-o", str(out), *TELEA]) == 0
    )
    with tifffile.TiffFile(out) as tf:
        assert tf.pages[0].is_tiled and tf.pages[0].tile == (32, 32)
        assert tf.is_ome == ome
        if ome:
            assert tf.series[0].axes == "ZYX"
            assert "rnon_batch" in tf.ome_metadata
        res = tf.asarray()
    assert res.shape == img.shape and res.dtype == img.dtype
    assert np.array_equal(res, reference(img, m))
    assert not any(p.name.endswith("rnon-partial.zarr") for p in tmp_path.iterdir())
    # TIFF input to zarr output
    assert (
        main(
            [
                str(tmp_path / name),
                "--mask",
                str(tmp_path / "m.tif"),
                "-o",
                str(tmp_path / "o.zarr"),
                *TELEA,
            ]
        )
        == 0
    )
    assert np.array_equal(zarr.open_array(str(tmp_path / "o.zarr"))[...], res)


def test_single_rgb_image_file_and_mask_value(tmp_path):
    import imageio.v3 as iio

    rgb = stack((40, 50, 3), np.uint8)
    rgb[5:10, 5:10] = 255  # saturated pixels to repair
    iio.imwrite(tmp_path / "a.png", rgb)
    assert default_axes(rgb.shape, image_file=True) == "YXC"
    out = tmp_path / "a.fixed.png"
    assert main([str(tmp_path / "a.png"), "--mask-value", "255", "-o", str(out), *TELEA]) == 0
    res = iio.imread(out)
    hole = (rgb == 255).any(axis=-1)
    assert np.array_equal(res[~hole], rgb[~hole])
    expect = Inpainter.from_pretrained("telea").inpaint(rgb, hole, channel_axis=-1)
    assert np.array_equal(res, expect)


def test_mask_value_on_zarr_stack(tmp_path):
    img = stack((3, 40, 40))
    img[1, 10:14, 10:14] = 0
    zarr_array(tmp_path / "in.zarr", img, (1, 20, 20))
    out = tmp_path / "out.zarr"
    assert main([str(tmp_path / "in.zarr"), "--mask-value", "0", "-o", str(out), *TELEA]) == 0
    res = zarr.open_array(str(out))[...]
    assert np.array_equal(res, reference(img, img == 0))
    assert (res[1, 10:14, 10:14] > 0).all()


def test_folder_of_images_with_same_named_masks(tmp_path):
    import imageio.v3 as iio

    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    imgs = {}
    for i, name in enumerate(["a.png", "b.tif"]):
        im = stack((30 + i, 40), np.uint16)
        imgs[name] = im
        if name.endswith(".png"):
            iio.imwrite(tmp_path / "img" / name, im)
        else:
            tifffile.imwrite(tmp_path / "img" / name, im)
        m = np.zeros(im.shape, np.uint8)
        m[5:9, 10 + i : 20] = 255
        iio.imwrite(tmp_path / "msk" / (Path(name).stem + ".png"), m)
    out = tmp_path / "out"
    assert (
        main([str(tmp_path / "img"), "--mask", str(tmp_path / "msk"), "-o", str(out), *TELEA]) == 0
    )
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["a.png", "b.tif"]
    for name, im in imgs.items():
        res = iio.imread(out / name)
        m = iio.imread(tmp_path / "msk" / (Path(name).stem + ".png")) > 0
        assert res.dtype == im.dtype
        assert np.array_equal(res, reference(im, m))
    manifest = json.loads((out / ".rnon-batch.json").read_text())
    assert manifest["rnon_batch"]["complete"]


def test_tiny_network_from_a_weights_path(tmp_path):
    from rnon_engine import create_model, save_weights

    w = tmp_path / "tiny.safetensors"
    save_weights(create_model("rnon-repair", width=0.125, depth=5), w)
    img, m = stack((2, 48, 64)), yx_mask()
    zarr_array(tmp_path / "in.zarr", img, (1, 48, 64))
    zarr_array(tmp_path / "m.zarr", m, (48, 64))
    out = tmp_path / "out.zarr"
    assert (
        main(
            [
                str(tmp_path / "in.zarr"),
                "--mask",
                str(tmp_path / "m.zarr"),
                "-o",
                str(out),
                "--model",
                str(w),
                "--no-progress",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    z = zarr.open_array(str(out))
    res = z[...]
    assert np.array_equal(res[:, m == 0], img[:, m == 0])
    inp = Inpainter.from_pretrained(str(w), "cpu", threads=1)
    for p in range(2):
        assert np.array_equal(res[p], inp.inpaint(img[p], m, channel_axis=None))
    prov = dict(z.attrs)["rnon_batch"]["model"]
    assert prov["method"] == "rnon"
    assert prov["sha256"]["repair"] == inp.provenance["sha256"]["repair"]


def test_yx_split_with_halo_writes_only_its_chunks(tmp_path):
    img, m = stack((2, 48, 64)), yx_mask()
    zarr_array(tmp_path / "in.zarr", img, (1, 16, 16))
    zarr_array(tmp_path / "m.zarr", m, (48, 64))
    info = describe_input(tmp_path / "in.zarr")
    plan = make_blocks(info, halo=8, max_block_mb=0.001)
    assert plan.split_yx and len(plan.blocks) == 2 * 3 * 4
    b = plan.blocks[5]
    assert b.window[1] == (max(0, b.region[1][0] - 8), min(48, b.region[1][1] + 8))
    out = tmp_path / "out.zarr"
    assert (
        main(
            [
                str(tmp_path / "in.zarr"),
                "--mask",
                str(tmp_path / "m.zarr"),
                "-o",
                str(out),
                "--max-block-mb",
                "0.001",
                "--halo",
                "8",
                *TELEA,
            ]
        )
        == 0
    )
    res = zarr.open_array(str(out))[...]
    assert np.array_equal(res[:, m == 0], img[:, m == 0])
    assert (res[:, m > 0] != img[:, m > 0]).any()


# --------------------------------------------------------------------------- overwrite, resume


def test_overwrite_refusal_and_resume_of_same_command(tmp_path, capsys):
    img, m = stack(), yx_mask()
    zarr_array(tmp_path / "in.zarr", img, (1, 48, 64))
    zarr_array(tmp_path / "m.zarr", m, (48, 64))
    out = tmp_path / "out.zarr"
    cmd = [str(tmp_path / "in.zarr"), "--mask", str(tmp_path / "m.zarr"), "-o", str(out), *TELEA]
    # a foreign output is refused
    zarr_array(out, np.zeros(3, np.uint8), (3,))
    assert main(cmd) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert zarr.open_array(str(out)).shape == (3,)
    assert main([*cmd, "--overwrite"]) == 0
    first = zarr.open_array(str(out))[...]
    assert np.array_equal(first, reference(img, m))
    # same command again: nothing to do, nothing rewritten
    mtime = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(cmd) == 0
    assert "already complete" in capsys.readouterr().err
    assert mtime == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    # another command (other model) on this output is refused
    assert main([*cmd[:-3], "--model", "ns", "--no-progress"]) == 2


@pytest.mark.parametrize("suffix", [".zarr", ".tif"])
def test_changed_mask_redoes_only_its_blocks(tmp_path, suffix):
    from rnon_engine.batch import BatchOptions, run_batch

    img = stack((4, 48, 64))
    m = np.zeros(img.shape, np.uint8)
    m[0, 10:18, 20:30] = 1
    m[2, 30:34, 5:9] = 1
    tifffile.imwrite(tmp_path / "in.tif", img)
    zarr_array(tmp_path / "m.zarr", m, (1, 48, 64))
    out = tmp_path / f"out{suffix}"
    opts = dict(
        input=str(tmp_path / "in.tif"),
        mask=str(tmp_path / "m.zarr"),
        output=str(out),
        model="telea",
        progress=False,
    )
    first = run_batch(BatchOptions(**opts))
    assert (first.computed, first.mask_changed) == (2, 0)
    m[2, 40:44, 50:60] = 1  # plane 2 changed
    m[3, 1:5, 1:5] = 1  # plane 3 gets holes
    zarr.open_array(str(tmp_path / "m.zarr"), mode="r+")[...] = m
    second = run_batch(BatchOptions(**opts))
    assert (second.computed, second.skipped, second.mask_changed) == (2, 2, 2)
    res = tifffile.imread(out) if suffix == ".tif" else zarr.open_array(str(out))[...]
    assert np.array_equal(res, reference(img, m))
    assert run_batch(BatchOptions(**opts)).skipped == 4  # complete


def test_dry_run_writes_nothing(tmp_path, capsys):
    img, m = stack(), yx_mask()
    zarr_array(tmp_path / "in.zarr", img, (1, 48, 64))
    zarr_array(tmp_path / "m.zarr", m, (48, 64))
    before = tree(tmp_path)
    assert (
        main(
            [
                str(tmp_path / "in.zarr"),
                "--mask",
                str(tmp_path / "m.zarr"),
                "-o",
                str(tmp_path / "out.zarr"),
                "--dry-run",
                *TELEA,
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "planes: 3" in text and "estimated time" in text and "tiles of 512" in text
    assert tree(tmp_path) == before


# --------------------------------------------------------------------------- bad inputs


def test_bad_inputs_exit_2_and_write_nothing(tmp_path, capsys):
    img, m = stack(), yx_mask()
    zarr_array(tmp_path / "in.zarr", img, (1, 48, 64))
    zarr_array(tmp_path / "m.zarr", m, (48, 64))
    zarr_array(tmp_path / "wrong.zarr", np.zeros((40, 64), np.uint8), (40, 64))
    (tmp_path / "broken.tif").write_bytes(b"not a tiff at all")
    before = tree(tmp_path)
    i, mk, o = str(tmp_path / "in.zarr"), str(tmp_path / "m.zarr"), str(tmp_path / "o.zarr")
    cases = {
        "does not exist": [str(tmp_path / "nope.zarr"), "--mask", mk, "-o", o],
        "MASK": [i, "--mask", str(tmp_path / "nope.tif"), "-o", o],
        "does not fit": [i, "--mask", str(tmp_path / "wrong.zarr"), "-o", o],
        "letters": [i, "--mask", mk, "-o", o, "--axes", "YX"],
        "must contain both Y and X": [i, "--mask", mk, "-o", o, "--axes", "ZYQ"],
        "cannot read": [str(tmp_path / "broken.tif"), "--mask", mk, "-o", o],
        "never writes into": [i, "--mask", mk, "-o", i],
        "never writes into ": [i, "--mask", mk, "-o", str(tmp_path / "in.zarr" / "sub")],
        "not both": [i, "--mask", mk, "--mask-value", "0", "-o", o],
    }
    for needle, argv in cases.items():
        assert main([*argv, *TELEA]) == 2, needle
        err = capsys.readouterr().err
        assert needle.strip() in err, (needle, err)
        assert "Traceback" not in err
    assert tree(tmp_path) == before


def _weights_zoo(tmp_path: Path) -> dict[str, Path]:
    """A tiny repair generator and broken variants of it."""
    from safetensors.torch import load_file, save_file

    from rnon_engine import create_model, read_metadata, save_weights

    good = save_weights(create_model("rnon-repair", width=0.125, depth=5), tmp_path / "w.st")
    data = good.read_bytes()
    (tmp_path / "trunc.st").write_bytes(data[: len(data) // 2])
    save_file({"w": load_file(str(good))[next(iter(load_file(str(good))))]}, tmp_path / "f.st")
    opt = save_weights(create_model("rnon-optimize", width=0.125, blocks=1), tmp_path / "o.st")
    # metadata that reads fine but describes another network than its tensors
    meta = read_metadata(good)
    raw = {"format": "napari-rnon-weights", "format_version": "1", "model_name": "rnon-repair"}
    raw["config"] = json.dumps({**meta["config"], "width": 0.25})
    save_file(load_file(str(good)), tmp_path / "mismatch.st", metadata=raw)
    return {
        "good": good,
        "missing": tmp_path / "nope.st",
        "trunc": tmp_path / "trunc.st",
        "foreign": tmp_path / "f.st",
        "optimize": opt,
        "mismatch": tmp_path / "mismatch.st",
    }


def test_bad_weights_exit_2_and_write_nothing(tmp_path, capsys):
    wdir = tmp_path / "w"
    wdir.mkdir()
    zoo = _weights_zoo(wdir)
    img, m = stack((2, 48, 64)), yx_mask()
    zarr_array(tmp_path / "in.zarr", img, (1, 48, 64))
    zarr_array(tmp_path / "m.zarr", m, (48, 64))
    before = tree(tmp_path)
    base = [str(tmp_path / "in.zarr"), "--mask", str(tmp_path / "m.zarr"), "--no-progress"]
    cases = {
        "missing": "weights file not found",
        "trunc": "corrupt or truncated",
        "foreign": "not napari-rnon weights",
        "optimize": "holds a 'rnon-optimize' model",
        "mismatch": "the model expects",  # found when the model is loaded, before writing
    }
    for key, needle in cases.items():
        argv = [*base, "-o", str(tmp_path / "o.zarr"), "--model", str(zoo[key])]
        assert main(argv) == 2, key
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, (key, err)
    argv = [*base, "-o", str(tmp_path / "o.zarr"), "--model", str(zoo["good"])]
    assert main([*argv, "--stage2", str(zoo["good"])]) == 2
    assert "not 'rnon-optimize'" in capsys.readouterr().err
    assert tree(tmp_path) == before


def test_help_explains_every_option(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    # Every option the parser defines (not a hand-kept list) is shown with a help text.
    actions = [a for a in parser._actions if a.option_strings]  # argparse has no public list
    assert len(actions) > 10
    for action in actions:
        assert action.help and action.help.strip(), action.option_strings
        assert any(opt in text for opt in action.option_strings), action.option_strings
    # The options a user reaches for first are among them.
    for opt in ["--mask", "--mask-value", "--output", "--model", "--workers", "--dry-run"]:
        assert opt in text


# --------------------------------------------------------------------------- kill and resume


def _cli(args, env_extra=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    return [
        sys.executable,
        "-c",
        "import sys; from rnon_engine.batch.cli import main; sys.exit(main())",
        *args,
    ], env


@pytest.mark.slow
def test_sigkill_mid_run_then_same_command_finishes(tmp_path):
    img = stack((12, 32, 40))
    m = np.zeros((32, 40), np.uint8)
    m[8:14, 10:20] = 1
    zarr_array(tmp_path / "in.zarr", img, (1, 32, 40))
    zarr_array(tmp_path / "m.zarr", m, (32, 40))
    out = tmp_path / "out.zarr"
    args = [
        str(tmp_path / "in.zarr"),
        "--mask",
        str(tmp_path / "m.zarr"),
        "-o",
        str(out),
        *TELEA,
        "--threads",
        "1",
    ]
    cmd, env = _cli(args, {"RNON_BATCH_TEST_DELAY": "0.4"})
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    done = out / ".rnon-batch" / "done"
    deadline = time.time() + 120
    while time.time() < deadline:
        if done.is_dir() and len(list(done.iterdir())) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(list(done.iterdir()))
    assert 3 <= n_before < 12, "the run was not killed mid-way"
    marker_times = {p.name: p.stat().st_mtime_ns for p in done.iterdir()}
    cmd, env = _cli(args)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"{n_before} of 12 blocks already done" in r.stderr
    assert f"({12 - n_before} blocks run" in r.stderr
    resumed = zarr.open_array(str(out))[...]
    # an uninterrupted run gives the same output
    assert main([*args[:4], str(tmp_path / "ref.zarr"), *args[5:]]) == 0
    assert np.array_equal(resumed, zarr.open_array(str(tmp_path / "ref.zarr"))[...])
    assert np.array_equal(resumed, reference(img, m))
    del marker_times


# --------------------------------------------------------------------------- LocalCluster


@pytest.mark.slow
def test_local_cluster_two_workers_equals_single_process(tmp_path):
    img = stack((4, 40, 48))
    m = np.zeros(img.shape, np.uint8)
    m[:, 10:16, 12:24] = 1
    m[2] = 0  # one block without holes: copied
    zarr_array(tmp_path / "in.zarr", img, (1, 20, 48))
    zarr_array(tmp_path / "m.zarr", m, (1, 40, 48))
    base = [str(tmp_path / "in.zarr"), "--mask", str(tmp_path / "m.zarr"), *TELEA]
    assert main([*base, "-o", str(tmp_path / "single.zarr")]) == 0
    assert main([*base, "-o", str(tmp_path / "dist.zarr"), "--workers", "2"]) == 0
    a = zarr.open_array(str(tmp_path / "single.zarr"))[...]
    b = zarr.open_array(str(tmp_path / "dist.zarr"))[...]
    assert np.array_equal(a, b)
    assert np.array_equal(a, reference(img, m))


@pytest.mark.slow
def test_workers_load_the_network_before_writing_and_the_driver_skips_torch(tmp_path, capsys):
    zoo = _weights_zoo(tmp_path)
    img, m = stack((3, 40, 48)), yx_mask(40, 48)
    zarr_array(tmp_path / "in.zarr", img, (1, 40, 48))
    zarr_array(tmp_path / "m.zarr", m, (40, 48))
    base = [str(tmp_path / "in.zarr"), "--mask", str(tmp_path / "m.zarr"), "--no-progress"]
    # A file whose tensors do not fit its config passes the driver's metadata check; the
    # worker fails to load it before anything is written.
    before = tree(tmp_path)
    bad = [*base, "-o", str(tmp_path / "bad.zarr"), "--model", str(zoo["mismatch"])]
    assert main([*bad, "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "the model expects" in err and "Traceback" not in err
    assert tree(tmp_path) == before
    # A network on a LocalCluster: the same pixels as the engine, and no torch in the driver.
    out = tmp_path / "out.zarr"
    args = [*base, "-o", str(out), "--model", str(zoo["good"]), "--workers", "1"]
    code = (
        "import sys; from rnon_engine.batch.cli import main; rc = main(sys.argv[1:]); "
        "print('torch' in sys.modules); sys.exit(rc)"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
    inp = Inpainter.from_pretrained(str(zoo["good"]), "cpu")
    res = zarr.open_array(str(out))[...]
    for p in range(3):
        assert np.array_equal(res[p], inp.inpaint(img[p], m, channel_axis=None))
