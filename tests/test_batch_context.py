"""rnon-batch --context-planes: block overlap, identity outside the mask, resume, bad input."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr

import rnon_engine.batch.stack as stack_module
from rnon_engine.batch import BatchOptions, run_batch
from rnon_engine.batch.cli import main
from rnon_engine.errors import RnonError
from rnon_engine.inference.inpainter import Inpainter


def _stack(n: int = 6) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :64]
    base = (yy * 40 + xx * 25).astype(np.float64)
    planes = [base + 30 * z + rng.integers(0, 200, size=base.shape) for z in range(n)]
    return np.stack(planes).astype(np.uint16)


def _mask(n: int = 6) -> np.ndarray:
    m = np.zeros((n, 48, 64), np.uint8)
    for z in range(n):  # transient defects, different in each plane
        m[z, 5 + 6 * z : 12 + 6 * z, 10 + 5 * z : 22 + 5 * z] = 1
    m[:, 40:44, 2:6] = 1  # the same pixels in every plane: 2-D fallback
    m[2] = 1  # a lost plane, filled from its neighbours
    return m


def _write(path: Path, data: np.ndarray, chunks: tuple[int, ...]) -> None:
    z = zarr.create_array(store=str(path), shape=data.shape, chunks=chunks, dtype=data.dtype)
    z[...] = data


def _reference(img: np.ndarray, m: np.ndarray, k: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Inpainter.from_pretrained("telea").inpaint(
            img, m, context_planes=k, channel_axis=None
        )


@pytest.mark.parametrize("chunk", [1, 4])
def test_blocks_overlap_by_k_planes_and_match_one_call(tmp_path: Path, chunk: int) -> None:
    img, m = _stack(), _mask()
    _write(tmp_path / "in.zarr", img, (chunk, 48, 64))
    _write(tmp_path / "m.zarr", m, (chunk, 48, 64))
    out = tmp_path / "out.zarr"
    args = [str(tmp_path / "in.zarr"), "--mask", str(tmp_path / "m.zarr"), "-o", str(out)]
    assert main([*args, "--model", "telea", "--context-planes", "2", "--no-progress"]) == 0
    res = zarr.open_array(str(out))[...]
    assert res.dtype == img.dtype
    assert np.array_equal(res[m == 0], img[m == 0])
    assert np.array_equal(res, _reference(img, m, 2))
    attrs = dict(zarr.open_array(str(out)).attrs)["rnon_batch"]
    assert attrs["context_planes"] == 2 and attrs["stack_axis"] == "Q"


def test_model_neighbours_defaults_to_two_planes(tmp_path: Path) -> None:
    img, m = _stack(), _mask()
    _write(tmp_path / "in.zarr", img, (1, 48, 64))
    _write(tmp_path / "m.zarr", m, (1, 48, 64))
    out = tmp_path / "out.zarr"
    args = [str(tmp_path / "in.zarr"), "--mask", str(tmp_path / "m.zarr"), "-o", str(out)]
    assert main([*args, "--model", "neighbours", "--no-progress"]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = Inpainter.from_pretrained("neighbours").inpaint(img, m)
    assert np.array_equal(zarr.open_array(str(out))[...], ref)


def test_interrupted_run_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    img, m = _stack(), _mask()
    _write(tmp_path / "in.zarr", img, (1, 48, 64))
    _write(tmp_path / "m.zarr", m, (1, 48, 64))
    opts = dict(
        input=str(tmp_path / "in.zarr"),
        mask=str(tmp_path / "m.zarr"),
        output=str(tmp_path / "out.zarr"),
        model="telea",
        context_planes=1,
        threads=1,
        progress=False,
    )
    real = stack_module.process_block
    calls: list[int] = []

    def dies_after_two(job, block):  # noqa: ANN001, ANN202
        if len(calls) == 2:
            raise KeyboardInterrupt("test stop")
        calls.append(block.index)
        return real(job, block)

    monkeypatch.setattr(stack_module, "process_block", dies_after_two)
    with pytest.raises((KeyboardInterrupt, RnonError)):
        run_batch(BatchOptions(**opts))
    monkeypatch.setattr(stack_module, "process_block", real)
    second = run_batch(BatchOptions(**opts))
    assert second.skipped == 2
    assert np.array_equal(zarr.open_array(str(tmp_path / "out.zarr"))[...], _reference(img, m, 1))


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--context-planes", "6"], "at most 5"),
        (["--context-planes", "1", "--stack-axis", "Y"], "spatial"),
        (["--context-planes", "1", "--stack-axis", "T"], "not one of"),
        (["--context-planes", "-1"], ">= 0"),
        (["--stack-axis", "Z"], "goes with"),
    ],
)
def test_bad_options_are_refused_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], match: str
) -> None:
    img, m = _stack(), _mask()
    _write(tmp_path / "in.zarr", img, (1, 48, 64))
    _write(tmp_path / "m.zarr", m, (1, 48, 64))
    out = tmp_path / "out.zarr"
    args = [str(tmp_path / "in.zarr"), "--mask", str(tmp_path / "m.zarr"), "-o", str(out)]
    assert main([*args, "--model", "telea", "--no-progress", *extra]) == 2
    assert match in capsys.readouterr().err
    assert not out.exists()


def test_lost_planes_without_known_neighbours_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img, m = _stack(), _mask()
    m[1:4] = 1  # plane 2 and both planes within K=1 lost
    _write(tmp_path / "in.zarr", img, (1, 48, 64))
    _write(tmp_path / "m.zarr", m, (1, 48, 64))
    out = tmp_path / "out.zarr"
    args = [str(tmp_path / "in.zarr"), "--mask", str(tmp_path / "m.zarr"), "-o", str(out)]
    assert main([*args, "--model", "telea", "--no-progress", "--context-planes", "1"]) == 2
    assert "z=2" in capsys.readouterr().err.lower() or not out.exists()
    assert not out.exists()
    assert main([*args, "--model", "telea", "--no-progress", "--context-planes", "2"]) == 0
