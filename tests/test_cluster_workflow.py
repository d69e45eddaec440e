"""From napari to the cluster: paint the mask once, run ``rnon-batch stack.zarr`` (issue 11).

The GUI tests (marked ``gui``) need Xvfb; the rest run headless.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from rnon_engine.batch.cli import main
from rnon_engine.inference.inpainter import Inpainter

SHAPE = (3, 64, 64)
TELEA = ["--model", "telea", "--no-progress"]


def write_stack(path: Path, fmt: str = "0.5", shape=SHAPE) -> np.ndarray:
    """A small uint16 OME-Zarr stack written with ome-zarr (two levels, 1x32x32 chunks)."""
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    img = (yy * 30 + xx * 20 + 500 + rng.integers(0, 300, size=shape)).astype(np.uint16)
    f = FormatV05() if fmt == "0.5" else FormatV04()
    g = zarr.open_group(str(path), mode="w", zarr_format=f.zarr_format)
    write_image(
        img,
        g,
        axes="zyx",
        fmt=f,
        scale_factors=[2],
        storage_options={"chunks": (1, 32, 32)},
        scale={"z": 2.0, "y": 0.5, "x": 0.5},
    )
    return img


def write_label(path: Path, mask: np.ndarray, fmt: str = "0.5") -> None:
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_labels

    f = FormatV05() if fmt == "0.5" else FormatV04()
    write_labels(
        mask,
        zarr.open_group(str(path), mode="r+"),
        name="repair",
        axes="zyx"[-mask.ndim :],
        fmt=f,
        scaler=None,
        scale_factors=[],
    )


def image_files(root: Path) -> dict[str, str]:
    """SHA-256 of every file of an OME-Zarr image outside ``labels/``."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] != "labels"
    }


def level0(path: Path) -> np.ndarray:
    from napari_rnon._ome_io import open_ome_image

    info = open_ome_image(path)
    assert info is not None
    return np.asarray(zarr.open_group(str(path), mode="r")[info.datasets[0]][...])


def ome_meta(path: Path) -> dict:
    attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    ms = attrs.get("ome", attrs)["multiscales"][0]
    return {"axes": ms["axes"], "datasets": ms["datasets"]}


def telea_reference(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    inp = Inpainter.from_pretrained("telea")
    out = img.copy()
    for z in range(img.shape[0]):
        m = mask if mask.ndim == 2 else mask[z]
        if m.any():
            out[z] = inp.inpaint(img[z], m != 0)
    return out


# --------------------------------------------------------------------------- headless


def test_no_label_and_no_mask_is_a_clear_error_and_writes_nothing(tmp_path, capsys):
    src = tmp_path / "stack.zarr"
    write_stack(src)
    before = image_files(src)
    assert main([str(src), *TELEA]) == 2
    err = capsys.readouterr().err
    assert "labels/repair" in err and "napari" in err
    assert "--mask MASK" in err and "--mask-value V" in err
    assert "Nothing was written" in err
    assert not (tmp_path / "stack.repaired.zarr").exists()
    assert image_files(src) == before and not (src / "labels").exists()


def test_repair_label_of_the_wrong_shape_is_refused(tmp_path, capsys):
    src = tmp_path / "stack.zarr"
    write_stack(src)
    write_label(src, np.ones((3, 32, 64), np.uint8))
    assert main([str(src), *TELEA]) == 2
    err = capsys.readouterr().err
    assert "labels/repair" in err and "(3, 32, 64)" in err and "(3, 64, 64)" in err
    assert "--mask" in err
    assert not (tmp_path / "stack.repaired.zarr").exists()


def test_existing_output_of_another_command_is_refused_without_overwrite(tmp_path, capsys):
    src = tmp_path / "stack.zarr"
    img = write_stack(src)
    mask = np.zeros(SHAPE[-2:], np.uint8)
    mask[20:30, 10:25] = 1
    write_label(src, mask)
    out = tmp_path / "stack.repaired.zarr"
    # another command (another method) wrote the default output
    assert main([str(src), "--model", "ns", "--no-progress"]) == 0
    first = level0(out)
    capsys.readouterr()
    assert main([str(src), *TELEA]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and str(out) in err
    assert np.array_equal(level0(out), first)
    assert main([str(src), "--overwrite", *TELEA]) == 0
    assert np.array_equal(level0(out), telea_reference(img, mask))
    # a directory not written by rnon-batch at all is refused too
    other = tmp_path / "b.zarr"
    write_stack(other)
    write_label(other, mask)
    (tmp_path / "b.repaired.zarr").mkdir()
    (tmp_path / "b.repaired.zarr" / "notes.txt").write_text("mine")
    assert main([str(other), *TELEA]) == 2
    assert (tmp_path / "b.repaired.zarr" / "notes.txt").read_text() == "mine"


def test_mask_saved_again_redoes_only_the_blocks_whose_mask_changed(tmp_path, capsys):
    """Save mask (Replace), same command: no --overwrite, only the changed blocks redone."""
    from napari_rnon._ome_io import save_repair_label

    src = tmp_path / "stack.zarr"
    img = write_stack(src)
    mask = np.zeros(SHAPE, np.uint8)
    mask[0, 5:15, 5:15] = 1
    mask[1, 40:50, 20:30] = 1
    save_repair_label(src, mask)
    assert main([str(src), *TELEA]) == 0
    assert main([str(src), *TELEA]) == 0  # same mask: complete, nothing to do
    assert "already complete" in capsys.readouterr().err
    out = tmp_path / "stack.repaired.zarr"
    planes = {z: sorted((out / "0" / "c" / str(z)).rglob("*")) for z in range(3)}
    stamp = {z: [(p, p.stat().st_mtime_ns) for p in planes[z] if p.is_file()] for z in range(3)}
    mask[1, 50:60, 40:50] = 1  # painted more on plane 1 only
    save_repair_label(src, mask, replace=True)
    assert main([str(src), *TELEA]) == 0
    err = capsys.readouterr().err
    assert "mask changed in 1 of 3 blocks" in err and "1 blocks redone" in err
    assert np.array_equal(level0(out), telea_reference(img, mask))
    for z in (0, 2):  # kept, not rewritten
        assert stamp[z] == [(p, p.stat().st_mtime_ns) for p in planes[z] if p.is_file()]
    assert main([str(src), *TELEA]) == 0
    assert "already complete" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["0.5", "0.4"])
@pytest.mark.parametrize("label_shape", [SHAPE[-2:], SHAPE])
def test_bare_command_on_saved_label(tmp_path, capsys, fmt, label_shape):
    """NGFF 0.5 (zarr 3) and 0.4 (zarr 2); a YX label broadcast, or a full-shape one."""
    from napari_rnon._ome_io import open_ome_image, save_repair_label

    src = tmp_path / "stack.zarr"
    img = write_stack(src, fmt)
    before = image_files(src)
    mask = np.zeros(label_shape, np.uint8)
    mask[..., 12:20, 30:44] = 1
    if len(label_shape) == 3:
        mask[1] = 0  # plane 1 untouched
        mask[2, 50:60, 3:9] = 1
    path = save_repair_label(src, mask)
    assert path == src.resolve() / "labels" / "repair"
    assert image_files(src) == before  # only labels/ was written
    label = zarr.open_group(str(path), mode="r")
    assert label.metadata.zarr_format == (3 if fmt == "0.5" else 2)
    lattrs = dict(label.attrs)
    assert lattrs.get("ome", lattrs)["image-label"]["version"] == fmt
    lms = lattrs.get("ome", lattrs)["multiscales"][0]
    assert [a["name"] for a in lms["axes"]] == list("zyx"[-len(label_shape) :])
    scale = lms["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == [2.0, 0.5, 0.5][-len(label_shape) :]
    with pytest.raises(Exception, match="exists"):
        save_repair_label(src, mask)

    assert main([str(src), *TELEA]) == 0
    err = capsys.readouterr().err
    out = tmp_path / "stack.repaired.zarr"
    assert f"wrote {out}" in err
    result = level0(out)
    assert np.array_equal(result, telea_reference(img, mask))
    outside = np.broadcast_to(mask == 0, SHAPE)
    assert np.array_equal(result[outside], img[outside])
    assert ome_meta(out) == ome_meta(src)
    info_in, info_out = open_ome_image(src), open_ome_image(out)
    assert info_out.chunks == info_in.chunks and info_out.zarr_format == info_in.zarr_format
    prov = dict(zarr.open_group(str(out), mode="r").attrs)["rnon_batch"]
    assert prov["complete"] and prov["mask"] == str(path)
    assert prov["model"]["method"] == "telea" and prov["command"].startswith("rnon-batch ")
    assert image_files(src) == before


def test_save_label_checks_the_shape(tmp_path):
    from napari_rnon._ome_io import save_repair_label
    from napari_rnon._planes import UserError

    src = tmp_path / "stack.zarr"
    write_stack(src)
    with pytest.raises(UserError, match=r"\(3, 64, 64\)"):
        save_repair_label(src, np.ones((64, 32), np.uint8))
    with pytest.raises(UserError, match="not an OME-Zarr"):
        save_repair_label(tmp_path, np.ones((64, 64), np.uint8))
    assert not (src / "labels").exists()


def test_batch_command_from_settings():
    from rnon_engine.batch.command import batch_command

    def s(name="auto", stage2=None, device="auto", tile=512, stages="both"):
        return {"model": name, "stage2": stage2, "device": device, "tile": tile, "stages": stages}

    assert batch_command("/d/stack.zarr", **s()) == ["rnon-batch", "/d/stack.zarr"]
    assert batch_command("/d/s.zarr", **s("telea", stages="repair", device="cpu")) == [
        "rnon-batch",
        "/d/s.zarr",
        "--model",
        "telea",
    ]
    assert batch_command("x.zarr", **s("/w/r.safetensors", "/w/o.safetensors", "cpu", 256)) == [
        "rnon-batch",
        "x.zarr",
        "--model",
        "/w/r.safetensors",
        "--stage2",
        "/w/o.safetensors",
        "--device",
        "cpu",
        "--tile",
        "256",
    ]
    assert batch_command(None, mask="MASK", **s(stages="repair")) == [
        "rnon-batch",
        "STACK.zarr",
        "--mask",
        "MASK",
        "--stages",
        "repair",
    ]
    # Packaged model names stay names (not resolved as files); the CLI default is left out.
    assert batch_command("x.zarr", **s("default"))[2:] == ["--model", "default"]
    assert batch_command("x.zarr", **s(), estimate_error=True)[2:] == ["--estimate-error"]


def test_reader_reads_image_lazily_with_its_repair_mask(tmp_path):
    pytest.importorskip("napari")
    import dask.array as da

    from napari_rnon._layers import MASK_FOR_KEY
    from napari_rnon._ome_io import OME_KEY
    from napari_rnon._reader import napari_get_reader

    assert napari_get_reader(str(tmp_path)) is None  # not OME-Zarr
    src = tmp_path / "stack.ome.zarr"
    img = write_stack(src, "0.4")
    reader = napari_get_reader(str(src))
    assert reader is not None
    (data, kw, kind), *rest = reader(str(src))
    assert kind == "image" and kw["multiscale"] and not rest
    assert isinstance(data[0], da.Array) and np.array_equal(np.asarray(data[0]), img)
    assert kw["scale"] == (2.0, 0.5, 0.5) and kw["name"] == "stack"
    assert kw["metadata"][OME_KEY]["path"] == str(src.resolve())
    mask = np.zeros(SHAPE[-2:], np.uint8)
    mask[3:9, 3:9] = 1
    write_label(src, mask, "0.4")
    _, (mdata, mkw, mkind) = reader(str(src))
    assert mkind == "labels" and isinstance(mdata, np.ndarray)
    assert np.array_equal(mdata, mask) and mkw["scale"] == (0.5, 0.5)
    assert mkw["metadata"][MASK_FOR_KEY] == "stack"


# --------------------------------------------------------------------------- GUI


def _run_widget(qtbot, widget):
    worker = widget.run("repair")
    assert worker is not None
    qtbot.waitUntil(lambda: widget._worker is None, timeout=120_000)


def _tiny_networks(tmp_path: Path) -> tuple[Path, Path]:
    import torch

    from rnon_engine import create_model, save_weights

    torch.manual_seed(0)
    rep = save_weights(
        create_model("rnon-repair", width=0.125, depth=4), tmp_path / "r.safetensors"
    )
    opt_model = create_model("rnon-optimize", width=0.125, blocks=1)
    with torch.no_grad():  # not the identity, so stage 2 really changes pixels
        for p in opt_model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    opt = save_weights(opt_model, tmp_path / "o.safetensors")
    return Path(rep), Path(opt)


@pytest.mark.gui
@pytest.mark.parametrize("engine", ["telea", "network"])
def test_napari_to_rnon_batch_the_whole_way(make_napari_viewer, qtbot, tmp_path, engine):
    pytest.importorskip("pytestqt")
    import torch

    from napari_rnon._layers import layer_data
    from napari_rnon._widget import ALL_PLANES, InpaintWidget
    from rnon_engine.batch.paths import default_output

    src = tmp_path / "stack.zarr"
    img = write_stack(src)
    before = image_files(src)

    viewer = make_napari_viewer()
    layers = viewer.open(str(src), plugin="napari-rnon")
    assert [type(ly).__name__ for ly in layers] == ["Image"]  # no labels/repair yet
    widget = InpaintWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Inpaint")
    assert widget._image.value is layers[0]
    assert widget.batch.expanded  # the section opens for an image read from OME-Zarr
    assert widget.batch.command() == ["rnon-batch", str(src.resolve())]
    widget._estimate.value = True  # "Estimate error" carries over to the stack's command
    assert widget.batch.command() == ["rnon-batch", str(src.resolve()), "--estimate-error"]
    assert widget.batch._command.value.endswith(" --estimate-error")
    widget._estimate.value = False
    assert "Save mask to OME-Zarr" in widget.batch._info.value

    mask_layer = widget.new_mask()
    assert mask_layer is not None and mask_layer.data.shape == SHAPE
    mask_layer.data_setitem((np.array([0] * 80), *np.mgrid[20:28, 30:40].reshape(2, -1)), 1)
    mask_layer.data_setitem((np.array([2] * 60), *np.mgrid[40:46, 5:15].reshape(2, -1)), 1)
    painted = np.array(mask_layer.data)
    assert painted[0].sum() == 80 and painted[1].sum() == 0 and painted[2].sum() == 60

    if engine == "telea":
        widget._method.value = "Telea (OpenCV)"
        extra: list[str] = ["--model", "telea"]
    else:
        rep, opt = _tiny_networks(tmp_path)
        widget._method.value = "RNON (repair + optimise)"
        widget.set_weights(rep)
        widget._stage2.value = str(opt)
        widget._device.value = "cpu"
        widget._tile_size.value = 256
        extra = [
            "--model",
            str(rep.resolve()),
            "--stage2",
            str(opt.resolve()),
            "--device",
            "cpu",
            "--tile",
            "256",
        ]
    widget.batch.confirm = lambda path: pytest.fail("nothing to replace yet")
    saved = widget.batch.save_mask()
    assert saved == src.resolve() / "labels" / "repair"
    assert image_files(src) == before
    command = widget.batch.command()
    assert command == ["rnon-batch", str(src.resolve()), *extra]
    assert widget.batch._command.value == widget.batch.command_text()
    copied: list[str] = []
    widget.batch.clipboard = copied.append
    assert widget.batch.copy_command() == widget.batch.command_text() == copied[0]
    assert "uses the mask saved in" in widget.batch._info.value

    # the real clipboard, once
    from qtpy.QtWidgets import QApplication

    from napari_rnon._batch_section import qt_copy

    qt_copy("rnon-batch x")
    assert QApplication.clipboard().text() == "rnon-batch x"

    # saving again asks first; "No" keeps the saved label as it is
    asked: list[Path] = []
    widget.batch.confirm = lambda path: asked.append(path) or False
    mask_layer.data_setitem((np.array([1]), np.array([0]), np.array([0])), 1)
    assert widget.batch.save_mask() is None and asked == [saved]
    mask_layer.data_setitem((np.array([1]), np.array([0]), np.array([0])), 0)

    # the widget's own Repair, every plane
    widget._planes.value = ALL_PLANES
    _run_widget(qtbot, widget)
    tag = "telea" if engine == "telea" else "RNON r + o"
    gui = np.asarray(layer_data(viewer.layers[f"stack repaired ({tag})"]))

    # rnon-batch, as a shell would run it, with the same torch thread count
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.run(
        [sys.executable, "-m", "rnon_engine.batch.cli", *command[1:], "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "stack.repaired.zarr"
    assert f"wrote {out}" in proc.stderr
    assert f"writes {default_output(src.resolve())}" in widget.batch._info.value
    result = level0(out)
    outside = painted == 0
    assert np.array_equal(result[outside], img[outside])
    assert not np.array_equal(result[0], img[0]) and np.array_equal(result[1], img[1])
    for z in range(SHAPE[0]):
        assert np.array_equal(result[z], gui[z]), f"plane {z} differs between GUI and CLI"
    assert ome_meta(out) == ome_meta(src)
    assert image_files(src) == before

    # reopened in napari: the saved mask comes back as the mask layer for the image
    viewer.layers.clear()
    image, mask = viewer.open(str(src), plugin="napari-rnon")
    assert np.array_equal(np.asarray(mask.data), painted)
    assert widget._image.value is image and widget._mask.value is mask
    assert widget.batch.command() == command
    assert "uses the mask saved in" in widget.batch._info.value


@pytest.mark.gui
def test_replacing_the_saved_mask_asks_and_a_plain_layer_gets_a_placeholder(
    make_napari_viewer, tmp_path
):
    from napari_rnon._widget import InpaintWidget

    src = tmp_path / "stack.zarr"
    write_stack(src, "0.4")
    old = np.zeros(SHAPE[-2:], np.uint8)
    old[1:4, 1:4] = 1
    write_label(src, old, "0.4")
    viewer = make_napari_viewer()
    image, mask = viewer.open(str(src), plugin="napari-rnon")
    widget = InpaintWidget(viewer)
    assert widget._mask.value is mask
    mask.data_setitem((np.array([10]), np.array([10])), 1)
    widget.batch.confirm = lambda path: True
    assert widget.batch.save_mask() is not None
    from napari_rnon._ome_io import open_ome_image, read_repair_label

    saved = read_repair_label(open_ome_image(src))
    assert saved[10, 10] == 1 and np.array_equal(saved[1:4, 1:4], old[1:4, 1:4])
    assert zarr.open_group(str(src / "labels" / "repair")).metadata.zarr_format == 2

    # an image that is not from OME-Zarr: placeholders and a note, no save
    plain = viewer.add_image(np.zeros((32, 32), np.uint16), name="plain")
    widget._image.value = plain
    assert widget.batch.command() == ["rnon-batch", "STACK.zarr", "--mask", "MASK"]
    assert "not opened from an OME-Zarr" in widget.batch._info.value
    assert not widget.batch._save_btn.enabled
    assert not widget.batch.expanded  # closed for an image not read from OME-Zarr
