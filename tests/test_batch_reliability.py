"""rnon-batch under bad input, bad places and signals: a message, exit 2, nothing half-done.

Issue 21 (batch part): damaged chunks are named; planes the engine would refuse are found
before anything is written; tracebacks become messages; one writer per output.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from rnon_engine.batch.cli import main
from rnon_engine.inference.inpainter import Inpainter

TELEA = ["--model", "telea", "--no-progress"]


def stack(shape=(3, 32, 40), dtype=np.uint16) -> np.ndarray:
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    return (yy * 30 + xx * 20 + rng.integers(0, 100, size=shape)).astype(dtype)


def yx_mask(h=32, w=40) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[8:14, 10:20] = 1
    return m


def reference(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    inp = Inpainter.from_pretrained("telea")
    out = image.copy()
    for idx in np.ndindex(*image.shape[:-2]):
        m = mask if mask.ndim == 2 else mask[idx]
        if m.any():
            out[idx] = inp.inpaint(image[idx], m, channel_axis=None)
    return out


def zarr_array(path: Path, data: np.ndarray, chunks) -> None:
    z = zarr.create_array(store=str(path), shape=data.shape, chunks=chunks, dtype=data.dtype)
    z[...] = data


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture
def case(tmp_path):
    """A 3-plane uint16 zarr stack (one chunk per plane), a YX mask, their paths."""
    img, m = stack(), yx_mask()
    zarr_array(tmp_path / "in.zarr", img, (1, 32, 40))
    zarr_array(tmp_path / "m.zarr", m, (32, 40))
    return img, m, tmp_path / "in.zarr", tmp_path / "m.zarr"


def run(argv, capsys) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return rc, err


# --------------------------------------------------------------------------- damaged input


def test_garbled_image_chunk_is_named_and_the_run_resumes_once_it_is_restored(case, capsys):
    img, m, src, mpath = case
    out = src.parent / "out.zarr"
    chunk = src / "c" / "1" / "0" / "0"
    good = chunk.read_bytes()
    chunk.write_bytes(b"\x28\xb5\x2f\xfd" + os.urandom(40))  # zstd magic, garbage after it
    rc, err = run([src, "--mask", mpath, "-o", out, "--threads", "1", *TELEA], capsys)
    assert rc == 2
    assert "c/1/0/0" in err and str(src) in err and "damaged" in err
    assert "run the same command again" in err and "blocks were finished" in err
    chunk.write_bytes(good)
    rc, err = run([src, "--mask", mpath, "-o", out, *TELEA], capsys)
    assert rc == 0 and "resuming" in err
    assert np.array_equal(zarr.open_array(str(out))[...], reference(img, m))


def test_truncated_mask_chunk_stops_before_anything_is_written(case, capsys):
    _, _, src, mpath = case
    chunk = mpath / "c" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:10])
    before = tree(src.parent)
    rc, err = run([src, "--mask", mpath, "-o", src.parent / "out.zarr", *TELEA], capsys)
    assert rc == 2 and "MASK" in err and "c/0/0" in err and str(mpath) in err
    assert tree(src.parent) == before


def test_truncated_tiff_is_named_and_no_tiff_is_left_half_written(tmp_path, capsys):
    img = stack((4, 32, 40))
    tifffile.imwrite(tmp_path / "in.tif", img, compression="zlib")
    data = (tmp_path / "in.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) * 3 // 4])
    out = tmp_path / "out.tif"
    rc, err = run([tmp_path / "cut.tif", "--mask-value", "0", "-o", out, *TELEA], capsys)
    # the plan reads INPUT's values first (--mask-value): the damage is found before writing
    assert rc == 2 and "cut.tif" in err and "damaged or truncated" in err
    assert not out.exists()
    assert not list(tmp_path.glob("*.rnon-partial.zarr"))


# --------------------------------------------------------------------------- bad planes


def test_nan_outside_the_mask_in_one_plane_is_named_before_writing(tmp_path, capsys):
    img = stack().astype(np.float32)
    img[2, 30, 1] = np.nan
    zarr_array(tmp_path / "in.zarr", img, (1, 32, 40))
    zarr_array(tmp_path / "m.zarr", yx_mask(), (32, 40))
    before = tree(tmp_path)
    out = tmp_path / "new" / "deeper" / "o.zarr"  # folders made for the run go again
    base = [tmp_path / "in.zarr", "--mask", tmp_path / "m.zarr", "-o", out]
    for extra in ([], ["--dry-run"]):
        rc, err = run([*base, *extra, *TELEA], capsys)
        assert rc == 2 and "plane [2]" in err and "NaN" in err and "Nothing was written" in err
    assert tree(tmp_path) == before


def test_a_mask_covering_a_whole_plane_is_named_before_writing(case, capsys):
    img, _, src, _ = case
    full = np.zeros(img.shape, np.uint8)
    full[0, 3:6, 3:6] = 1
    full[1] = 1
    zarr_array(src.parent / "full.zarr", full, (1, 32, 40))
    zarr_array(src.parent / "yx.zarr", img, (1, 16, 20))  # planes cut into YX chunks
    before = tree(src.parent)
    for inp, extra in [
        (src, []),
        (src, ["--dry-run"]),
        (src.parent / "yx.zarr", ["--max-block-mb", "0.001"]),
    ]:
        argv = [inp, "--mask", src.parent / "full.zarr", "-o", src.parent / "o.zarr", *extra]
        rc, err = run([*argv, *TELEA], capsys)
        assert rc == 2 and "plane [1]" in err and "covers every pixel" in err, err
        assert "plane [0]" not in err
    assert tree(src.parent) == before


def test_mask_value_on_a_saturated_plane_is_named_before_writing(tmp_path, capsys):
    img = stack((3, 32, 40))
    img[0, 5, 5] = 65535
    img[2] = 65535
    zarr_array(tmp_path / "in.zarr", img, (1, 32, 40))
    before = tree(tmp_path)
    rc, err = run(
        [tmp_path / "in.zarr", "--mask-value", "65535", "-o", tmp_path / "o.zarr", *TELEA], capsys
    )
    assert rc == 2 and "plane [2]" in err and "65535" in err
    assert tree(tmp_path) == before


def test_mask_value_matching_no_pixel_is_refused(tmp_path, capsys):
    img = stack((2, 32, 40))
    zarr_array(tmp_path / "in.zarr", img, (1, 32, 40))
    tifffile.imwrite(tmp_path / "one.tif", img[0])
    before = tree(tmp_path)
    for src, out in [("in.zarr", "o.zarr"), ("one.tif", "o.tif")]:
        argv = [tmp_path / src, "--mask-value", "65535", "-o", tmp_path / out, *TELEA]
        rc, err = run(argv, capsys)
        assert rc == 2 and "no pixel" in err and "65535" in err, err
    assert tree(tmp_path) == before


def test_folder_checks_every_image_before_writing(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    a, b = stack((32, 40)), stack((32, 40))
    a[3, 4] = 65535
    tifffile.imwrite(tmp_path / "imgs" / "a.tif", a)
    tifffile.imwrite(tmp_path / "imgs" / "b.tif", b)
    out = tmp_path / "out"
    rc, err = run([tmp_path / "imgs", "--mask-value", "65535", "-o", out, *TELEA], capsys)
    assert rc == 0 and "1 image(s) have no pixel equal to 65535" in err and "b.tif" in err
    assert np.array_equal(tifffile.imread(out / "b.tif"), b)
    before = tree(tmp_path)
    rc, err = run([tmp_path / "imgs", "--mask-value", "7", "-o", tmp_path / "o2", *TELEA], capsys)
    assert rc == 2 and "no pixel of any image" in err
    assert tree(tmp_path) == before
    b[:] = 65535  # one image entirely saturated: named, nothing written
    tifffile.imwrite(tmp_path / "imgs" / "b.tif", b)
    before = tree(tmp_path)
    rc, err = run(
        [tmp_path / "imgs", "--mask-value", "65535", "-o", tmp_path / "o3", *TELEA], capsys
    )
    assert rc == 2 and "b.tif" in err and "every pixel" in err and "Nothing was written" in err
    assert tree(tmp_path) == before


# --------------------------------------------------------------------------- messages


def test_bad_options_and_paths_are_messages(case, capsys):
    _, _, src, mpath = case
    d = src.parent
    (d / "loop").symlink_to(d / "loop")
    (d / "afile").write_text("x")
    before = tree(d)
    base = [src, "--mask", mpath]
    cases = {
        "--tile must be a positive": [*base, "-o", d / "o.zarr", "--tile", "0"],
        "--tile must be a positive ": [*base, "-o", d / "o.zarr", "--tile", "-1"],
        "--max-block-mb must be a positive": [*base, "-o", d / "o.zarr", "--max-block-mb", "-5"],
        "points (directly or through others) back to itself": [d / "loop", "-o", d / "o.zarr"],
        "which is a file, not a folder": [*base, "-o", d / "afile" / "o.zarr"],
    }
    for needle, argv in cases.items():
        rc, err = run([*argv, *TELEA], capsys)
        assert rc == 2 and needle.strip() in err, (needle, err)
    assert tree(d) == before


@contextlib.contextmanager
def read_only(folder: Path):
    """Make ``folder`` unwritable, also for root (an immutable flag); skip if impossible."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("root without chattr: cannot make a folder read-only")
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
            pytest.skip("this file system has no immutable flag")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)


def test_read_only_output_folder_is_refused_before_the_model_loads(case, capsys, monkeypatch):
    _, _, src, mpath = case
    ro = src.parent / "ro"
    ro.mkdir()
    loaded = []
    monkeypatch.setattr(Inpainter, "from_pretrained", lambda *a, **k: loaded.append(1))
    with read_only(ro):
        rc, err = run([src, "--mask", mpath, "-o", ro / "sub" / "o.zarr", *TELEA], capsys)
    assert rc == 2 and "not writable" in err and str(ro) in err
    assert loaded == [] and list(ro.iterdir()) == []


def test_full_disk_while_writing_the_tiff_says_so_and_leaves_no_temp_file(tmp_path, capsys):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    img = stack((2, 32, 40))
    tifffile.imwrite(tmp_path / "in.tif", img)
    zarr_array(tmp_path / "m.zarr", yx_mask(), (32, 40))
    out = tmp_path / "out.tif"
    tmp = tmp_path / ".out.tif.rnon-tmp.tif"
    tmp.symlink_to("/dev/full")  # every write there fails with ENOSPC, as on a full disk
    argv = [tmp_path / "in.tif", "--mask", tmp_path / "m.zarr", "-o", out, *TELEA]
    rc, err = run(argv, capsys)
    assert rc == 2 and "no space left" in err and "run the same command again" in err
    assert not tmp.exists() and not tmp.is_symlink() and not out.exists()
    rc, err = run(argv, capsys)  # space freed: the same command finishes the TIFF
    assert rc == 0
    assert np.array_equal(tifffile.imread(out), reference(img, yx_mask()))


def test_full_disk_while_writing_blocks_says_so_and_resumes(case, capsys, monkeypatch):
    img, m, src, mpath = case
    from zarr.storage import _local

    real, calls = _local._put, []

    def put(path, value, exclusive=False):
        if "/c/" in str(path).replace(os.sep, "/") and "out.zarr" in str(path):
            calls.append(path)
            if len(calls) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, value, exclusive=exclusive)

    monkeypatch.setattr(_local, "_put", put)
    out = src.parent / "out.zarr"
    argv = [src, "--mask", mpath, "-o", out, "--threads", "1", *TELEA]
    rc, err = run(argv, capsys)
    assert rc == 2 and "no space left" in err and "of 3 blocks were finished" in err
    monkeypatch.setattr(_local, "_put", real)
    rc, err = run(argv, capsys)
    assert rc == 0 and "resuming" in err
    assert np.array_equal(zarr.open_array(str(out))[...], reference(img, m))


def test_scheduler_with_nothing_listening_fails_fast_with_a_message(case, capsys):
    _, _, src, mpath = case
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    before = tree(src.parent)
    argv = [src, "--mask", mpath, "-o", src.parent / "o.zarr", "--scheduler"]
    rc, err = run([*argv, f"tcp://127.0.0.1:{port}", *TELEA], capsys)
    assert rc == 2 and "no dask scheduler answers" in err
    rc, err = run([*argv, "not an address", *TELEA], capsys)
    assert rc == 2 and "not a scheduler address" in err
    assert tree(src.parent) == before


# --------------------------------------------------------------------------- signals, locks


def lock_path(out: Path) -> Path:
    from rnon_engine.batch.lock import lock_path as path

    return path(out)


def _cli(args, delay="0.5"):
    env = dict(os.environ, OMP_NUM_THREADS="1", RNON_BATCH_TEST_DELAY=delay)
    code = "import sys; from rnon_engine.batch.cli import main; sys.exit(main())"
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _wait_for(pred, timeout=120.0):
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_stops_with_a_message_and_the_run_resumes(tmp_path):
    img = stack((8, 32, 40))
    zarr_array(tmp_path / "in.zarr", img, (1, 32, 40))
    zarr_array(tmp_path / "m.zarr", yx_mask(), (32, 40))
    out = tmp_path / "out.zarr"
    args = [tmp_path / "in.zarr", "--mask", tmp_path / "m.zarr", "-o", out, *TELEA]
    p = _cli([*args, "--threads", "1"])
    _wait_for(
        lambda: (
            (out / ".rnon-batch" / "done").is_dir()
            and any((out / ".rnon-batch" / "done").iterdir())
        )
    )
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    assert "stopped by SIGTERM" in err and "run the same command again" in err
    assert "Traceback" not in err
    assert not lock_path(out).exists()
    assert main([str(a) for a in args]) == 0
    assert np.array_equal(zarr.open_array(str(out))[...], reference(img, yx_mask()))


@pytest.mark.slow
def test_a_second_writer_is_refused_and_a_stale_lock_is_cleared(case, capsys):
    img, m, src, mpath = case
    out = src.parent / "out.zarr"
    args = [src, "--mask", mpath, "-o", out, *TELEA]
    p = _cli([*args, "--threads", "1"], delay="1.0")
    try:
        _wait_for(lambda: out.exists())
        for extra in ([], ["--overwrite"]):
            rc, err = run([*args, *extra], capsys)
            assert rc == 2 and "another rnon-batch run is writing" in err
            assert f"pid {p.pid}" in err
    finally:
        _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert np.array_equal(zarr.open_array(str(out))[...], reference(img, m))
    assert not lock_path(out).exists()
    # a lock left by a killed run on this host: found stale, removed, and the run goes on
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    info = {"host": socket.gethostname(), "pid": dead.pid, "date": "earlier", "command": "x"}
    lock_path(out).write_text(json.dumps(info))
    rc, err = run([*args[:-3], "--model", "ns", "--no-progress", "--overwrite"], capsys)
    assert rc == 0 and "stale lock" in err and not lock_path(out).exists()
    # a lock of another host cannot be checked from here: refused, with how to clear it
    lock_path(out).write_text(json.dumps({**info, "host": "elsewhere", "pid": 1}))
    rc, err = run([*args, "--overwrite"], capsys)
    assert rc == 2 and "elsewhere" in err and "delete" in err
