"""The plugin's Qt-free parts: geometry, masks, the per-plane run, lazy results, packaging."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from napari_rnon import _planes
from napari_rnon._planes import (
    MaskPlanes,
    PlaneSink,
    RunCancelled,
    UserError,
    check_mask_shape,
    composite,
    make_geometry,
    read_plane,
    run_planes,
)

ROOT = Path(__file__).resolve().parents[1]


def fill_with_max(plane, mask, progress=None, cancel=None):
    """A stand-in engine: masked pixels become the dtype's maximum, in 4 'tiles'."""
    out = plane.copy()
    out[mask] = np.iinfo(plane.dtype).max
    for i in range(4):
        if progress is not None:
            progress(i + 1, 4)
    return out


class CountingArray:
    """Array-like that records every index it is read with (to prove lazy reading)."""

    def __init__(self, data):
        self.data = data
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim
        self.reads = []

    def __getitem__(self, key):
        self.reads.append(key)
        return self.data[key]


def test_geometry_axes():
    rgb = make_geometry((5, 64, 48, 3), rgb=True)
    assert rgb.spatial_shape == (5, 64, 48)
    assert rgb.leading_shape == (5,) and rgb.yx == (64, 48)
    assert rgb.plane_shape == (64, 48, 3) and rgb.n_planes == 5
    gray = make_geometry((2, 3, 16, 16), rgb=False)
    assert gray.all_planes() == [(i, j) for i in range(2) for j in range(3)]
    assert make_geometry((16, 16), rgb=False).all_planes() == [()]
    with pytest.raises(UserError, match="two spatial axes"):
        make_geometry((16, 3), rgb=True)


def test_mask_shape_full_broadcast_and_mismatch():
    g = make_geometry((4, 32, 40), rgb=False)
    assert check_mask_shape((4, 32, 40), g) is False
    assert check_mask_shape((32, 40), g) is True
    with pytest.raises(UserError, match=r"\(40, 32\).*\(4, 32, 40\).*\(32, 40\)"):
        check_mask_shape((40, 32), g)
    rgb = make_geometry((32, 40, 3), rgb=True)
    with pytest.raises(UserError, match="New mask"):
        check_mask_shape((32, 40, 3), rgb)


def test_mask_snapshot_is_not_changed_by_later_painting():
    g = make_geometry((3, 8, 8), rgb=False)
    labels = np.zeros((3, 8, 8), np.uint8)
    labels[1, 2, 2] = 5
    mask = MaskPlanes(labels, g, [(1,), (2,)])
    labels[1, 3, 3] = 1  # painting during a run
    assert mask.plane((1,)).sum() == 1 and mask.plane((1,)).dtype == bool
    assert mask.painted_planes() == [(1,)]
    assert not mask.lazy


def test_run_planes_outside_mask_identical_skips_empty_planes_and_reports_progress():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60000, (3, 16, 20), dtype=np.uint16)
    g = make_geometry(image.shape, rgb=False)
    labels = np.zeros((3, 16, 20), np.uint8)
    labels[0, 4:8, 5:9] = 1
    labels[2, 0, 0] = 2
    ticks = []
    result = run_planes(
        image,
        g,
        MaskPlanes(labels, g, g.all_planes()),
        g.all_planes(),
        fill_with_max,
        progress=lambda d, t: ticks.append((d, t)),
    )
    assert sorted(result.planes) == [(0,), (2,)] and result.skipped == [(1,)]
    for idx, plane in result.planes.items():
        m = labels[idx] != 0
        np.testing.assert_array_equal(plane[~m], image[idx][~m])
        assert (plane[m] == 65535).all()
    done = [d for d, _ in ticks]
    assert done == sorted(done) and ticks[-1][0] == ticks[-1][1]
    assert image.max() < 65535  # the input was not touched


def test_run_planes_cancel_between_planes():
    image = np.zeros((3, 8, 8), np.uint8)
    g = make_geometry(image.shape, rgb=False)
    mask = MaskPlanes(np.ones((8, 8), np.uint8), g, g.all_planes())
    calls = []

    def inpaint(plane, m, progress=None, cancel=None):
        calls.append(1)
        return plane.copy()

    with pytest.raises(RunCancelled):
        run_planes(image, g, mask, g.all_planes(), inpaint, cancel=lambda: len(calls) >= 1)
    assert len(calls) == 1


def test_lazy_source_reads_only_the_requested_plane():
    data = np.arange(6 * 8 * 8, dtype=np.uint16).reshape(6, 8, 8)
    counting = CountingArray(data)
    source = da.from_array(counting, chunks=(1, 8, 8))
    g = make_geometry(source.shape, rgb=False)
    mask_data = np.zeros((8, 8), np.uint8)
    mask_data[3, 3] = 1
    counting.reads.clear()
    result = run_planes(source, g, MaskPlanes(mask_data, g, [(4,)]), [(4,)], fill_with_max)
    planes_read = set()
    for key in counting.reads:
        first = key[0] if isinstance(key, tuple) else key
        planes_read |= set(range(6)[first]) if isinstance(first, slice) else {int(first)}
    assert planes_read == {4}
    assert result.planes[(4,)][3, 3] == 65535


def test_sink_on_disk_and_composite_is_lazy_and_fresh(monkeypatch):
    monkeypatch.setattr(_planes, "MEMORY_SINK_LIMIT", 0)
    data = np.arange(4 * 6 * 5, dtype=np.uint16).reshape(4, 6, 5)
    g = make_geometry(data.shape, rgb=False)
    sink = PlaneSink(g.plane_shape, data.dtype, 2)
    assert sink.on_disk
    repaired = np.full((6, 5), 7, np.uint16)
    sink.put((2,), repaired)
    np.testing.assert_array_equal(read_plane(sink.planes[(2,)]), repaired)
    a = composite(da.from_array(data, chunks=(2, 6, 5)), g, sink.planes)
    b = composite(data, g, sink.planes)
    assert a.name != b.name  # a new dask name per update: no stale cached planes
    for arr in (a, b):
        out = arr.compute()
        np.testing.assert_array_equal(out[2], repaired)
        np.testing.assert_array_equal(np.delete(out, 2, axis=0), np.delete(data, 2, axis=0))


def test_importing_the_plugin_does_not_import_torch():
    code = (
        "import sys, napari_rnon, napari_rnon._planes, napari_rnon._layers, "
        "napari_rnon._commands, napari_rnon._sample_data, napari_rnon._widget; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"


def test_npe2_validate_passes():
    out = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-rnon", "--imports"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in out.stdout


def test_manifest_declares_widget_menu_and_samples():
    from npe2 import PluginManifest

    mf = PluginManifest.from_distribution("napari-rnon")
    assert mf.name == "napari-rnon"
    assert [w.display_name for w in mf.contributions.widgets] == ["Inpaint", "Fine-tune"]
    assert {s.key for s in mf.contributions.sample_data} == {"damaged_photo", "dead_pixel_stack"}
    menu = mf.contributions.menus["napari/layers/annotate"]
    assert [m.command for m in menu] == ["napari-rnon.add_repair_mask"]


def test_wheel_ships_the_manifest(tmp_path):
    builders = pytest.importorskip("hatchling.builders.wheel")
    wheel = builders.WheelBuilder(str(ROOT))
    path = next(iter(wheel.build(directory=str(tmp_path), versions=["standard"])))
    with zipfile.ZipFile(path) as zf:
        shipped = zf.read("napari_rnon/napari.yaml").decode()
        entry_points = next(n for n in zf.namelist() if n.endswith("entry_points.txt"))
        assert "napari-rnon = napari_rnon:napari.yaml" in zf.read(entry_points).decode()
    assert shipped == (ROOT / "napari.yaml").read_text()
