"""Plane bookkeeping for the plugin: geometry, masks, the per-plane run and lazy results.

Nothing here imports Qt, napari or torch, so it runs (and is tested) without a display.
A napari layer's last two axes are Y and X (plus a trailing colour axis for RGB layers);
every axis before them is a "leading" axis (Z, T, ...). The plugin repairs one YX plane at
a time, reading each plane lazily from numpy, dask or zarr data, so a large stack is never
loaded whole.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnon_engine.inference.layout import PlaneIndex, PlaneLayout

# Results of one run stay in memory up to this size; beyond it they go to a temporary zarr
# store on disk, so an "all planes" run over a stack larger than memory still works.
MEMORY_SINK_LIMIT = 512 * 2**20


class UserError(Exception):
    """Something the user can fix (no mask, wrong shape...); shown as a notification."""


class RunCancelled(Exception):
    """The run stopped between planes because cancel() returned True."""


@dataclass(frozen=True)
class Geometry:
    """Axes of an image layer's data.

    The planes and channel groups follow the engine's
    :class:`~rnon_engine.inference.layout.PlaneLayout` (:attr:`layout`): the colour axis
    of an RGB layer is the channel axis, every other layer has none.

    Attributes:
        shape: Full data shape, e.g. ``(Z, Y, X)`` or ``(Y, X, 3)``.
        rgb: True when the last axis holds colour channels (napari's ``layer.rgb``).
    """

    shape: tuple[int, ...]
    rgb: bool

    @property
    def layout(self) -> PlaneLayout:
        """The engine's plane layout of the data (colour axis = channel axis)."""
        return PlaneLayout(self.shape, len(self.shape) - 1 if self.rgb else None)

    @property
    def channel_axis(self) -> int | None:
        """The ``channel_axis`` to hand the engine for one plane: -1 for RGB, else None."""
        return self.layout.plane_channel_axis

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape without the colour axis (the shape a mask Labels layer has)."""
        return self.shape[:-1] if self.rgb else self.shape

    @property
    def leading_shape(self) -> tuple[int, ...]:
        """Shape of the axes before Y, X (empty for a single 2-D image)."""
        return self.layout.leading

    @property
    def yx(self) -> tuple[int, int]:
        """The plane size (Y, X)."""
        return self.layout.spatial

    @property
    def plane_shape(self) -> tuple[int, ...]:
        """Shape of one plane as the engine receives it: ``(Y, X)`` or ``(Y, X, C)``."""
        return self.layout.plane_shape

    @property
    def n_planes(self) -> int:
        """Number of YX planes in the data."""
        return self.layout.n_planes

    def all_planes(self) -> list[PlaneIndex]:
        """Every plane index in C order."""
        return self.layout.planes


def make_geometry(shape: tuple[int, ...], rgb: bool) -> Geometry:
    """Check that an image layer can be inpainted and describe its axes.

    Raises:
        UserError: The data has fewer than two spatial axes.
    """
    geometry = Geometry(tuple(int(s) for s in shape), bool(rgb))
    if len(geometry.spatial_shape) < 2:
        raise UserError(
            f"The image has shape {shape}; inpainting needs at least two spatial axes (Y, X)."
        )
    return geometry


def check_mask_shape(mask_shape: tuple[int, ...], geometry: Geometry) -> bool:
    """Check a mask against an image and say whether it is broadcast over the planes.

    A mask either has the image's spatial shape (one mask per plane) or only ``(Y, X)``
    (the same pixels are repaired in every plane, e.g. dead camera pixels).

    Returns:
        True for a ``(Y, X)`` mask broadcast over the leading axes.

    Raises:
        UserError: The shapes do not match; the message names both.
    """
    mask_shape = tuple(int(s) for s in mask_shape)
    per_plane = geometry.layout.mask_per_plane(mask_shape)
    if per_plane is not None:
        return bool(geometry.leading_shape) and not per_plane
    allowed = f"{geometry.spatial_shape}"
    if geometry.leading_shape:
        allowed += f" or {geometry.yx} (same mask for every plane)"
    raise UserError(
        f"The mask has shape {mask_shape} but the image needs {allowed}. "
        "Click 'New mask' to make a mask of the right shape."
    )


class MaskPlanes:
    """Reads the mask plane for each image plane as a boolean array (True = repair).

    A numpy mask (what napari's paint brush edits) is copied for the planes of the run
    when the run is prepared, so painting during the run cannot change it half-way. Any
    other array (dask, zarr) is read lazily, plane by plane.
    """

    def __init__(self, data: Any, geometry: Geometry, planes: Iterable[PlaneIndex]) -> None:
        self.broadcast = check_mask_shape(tuple(data.shape), geometry)
        self._data = data
        self._snapshot: dict[PlaneIndex, np.ndarray] | None = None
        if isinstance(data, np.ndarray):
            if self.broadcast:
                plane = data != 0
                self._snapshot = {idx: plane for idx in planes}
            else:
                self._snapshot = {idx: data[idx] != 0 for idx in planes}

    @property
    def lazy(self) -> bool:
        """True when planes are read from the layer's (dask/zarr) data during the run."""
        return self._snapshot is None

    def plane(self, idx: PlaneIndex) -> np.ndarray:
        """The (Y, X) boolean mask for plane ``idx``."""
        if self._snapshot is not None and idx in self._snapshot:
            return self._snapshot[idx]
        plane = self._data if self.broadcast else self._data[idx]
        return np.asarray(plane) != 0

    def painted_planes(self) -> list[PlaneIndex] | None:
        """Planes of the run with at least one painted pixel; None when the mask is lazy."""
        if self._snapshot is None:
            return None
        return [idx for idx, m in self._snapshot.items() if m.any()]


class PlaneSink:
    """Collects repaired planes of one run: in memory, or in a temporary zarr store."""

    def __init__(self, plane_shape: tuple[int, ...], dtype: np.dtype, n_planes: int) -> None:
        self.plane_shape = tuple(plane_shape)
        self.dtype = np.dtype(dtype)
        self.planes: dict[PlaneIndex, Any] = {}
        self._zarr: Any = None
        self._slots: dict[PlaneIndex, int] = {}
        nbytes = n_planes * math.prod(self.plane_shape) * self.dtype.itemsize
        if nbytes > MEMORY_SINK_LIMIT:
            import zarr

            tmpdir = tempfile.mkdtemp(prefix="napari-rnon-")
            self._zarr = zarr.open_array(
                tmpdir,
                mode="w",
                shape=(n_planes, *self.plane_shape),
                chunks=(1, *self.plane_shape),
                dtype=self.dtype,
            )
            # The directory lives as long as some array still reads from it.
            weakref.finalize(self._zarr, shutil.rmtree, tmpdir, True)

    @property
    def on_disk(self) -> bool:
        """True when planes are written to a temporary zarr store."""
        return self._zarr is not None

    def put(self, idx: PlaneIndex, plane: np.ndarray) -> None:
        """Store the repaired plane ``idx``."""
        if self._zarr is None:
            self.planes[idx] = plane
            return
        slot = self._slots.setdefault(idx, len(self._slots))
        self._zarr[slot] = plane
        self.planes[idx] = _ZarrPlane(self._zarr, slot)


@dataclass(frozen=True)
class _ZarrPlane:
    """A reference to one plane in a zarr array, read on demand."""

    array: Any
    slot: int

    def read(self) -> np.ndarray:
        return np.asarray(self.array[self.slot])


def read_plane(ref: Any) -> np.ndarray:
    """Materialise a plane stored by :class:`PlaneSink`."""
    return ref.read() if isinstance(ref, _ZarrPlane) else np.asarray(ref)


@dataclass
class RunResult:
    """What a run produced.

    Attributes:
        planes: Repaired planes by plane index (arrays or on-disk references).
        skipped: Planes whose mask was empty (left unchanged).
        provenance: The engine's provenance record, filled in by the caller.
    """

    planes: dict[PlaneIndex, Any] = field(default_factory=dict)
    skipped: list[PlaneIndex] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)


ProgressFn = Callable[[int, int], None]
InpaintFn = Callable[..., np.ndarray]


def run_planes(
    image: Any,
    geometry: Geometry,
    mask: MaskPlanes,
    planes: list[PlaneIndex],
    inpaint: InpaintFn,
    *,
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | None = None,
) -> RunResult:
    """Inpaint ``planes`` of ``image`` one at a time; the image itself is never modified.

    Args:
        image: Full layer data (numpy, dask, zarr...); only the planes named are read.
        geometry: Its axes.
        mask: The mask reader.
        planes: Leading-axis indices of the planes to repair.
        inpaint: ``inpaint(plane, mask_plane, progress=..., cancel=...) -> plane``.
        progress: Called with ``(done, total)`` in units of tiles over the whole run
            (planes with an empty mask count as one unit).
        cancel: Checked between planes and passed on to ``inpaint``.

    Returns:
        The repaired planes and the planes skipped because their mask was empty.

    Raises:
        RunCancelled: ``cancel()`` returned True between two planes.
    """
    sink = PlaneSink(geometry.plane_shape, _dtype_of(image), len(planes))
    result = RunResult(planes=sink.planes)
    n = len(planes)
    per_plane = [1]  # tiles per plane, learnt from the engine's first progress call

    def report(i: int, done: int, total: int) -> None:
        if progress is None:
            return
        per_plane[0] = max(1, total)
        progress(i * per_plane[0] + done, n * per_plane[0])

    for i, idx in enumerate(planes):
        if cancel is not None and cancel():
            raise RunCancelled()
        m = mask.plane(idx)
        if not m.any():
            result.skipped.append(idx)
            report(i, per_plane[0], per_plane[0])
            continue
        plane = np.asarray(image[idx]) if idx else np.asarray(image)
        out = inpaint(
            plane,
            m,
            progress=lambda done, total, i=i: report(i, done, total),
            cancel=cancel,
        )
        sink.put(idx, out)
        report(i, per_plane[0], per_plane[0])
    return result


def _dtype_of(data: Any) -> np.dtype:
    return np.dtype(data.dtype)


def composite(source: Any, geometry: Geometry, planes: Mapping[PlaneIndex, Any]) -> Any:
    """A lazy dask array: ``source`` with some planes replaced by repaired ones.

    Used for results of dask/zarr-backed layers, so that repairing one plane of a large
    stack neither copies nor loads the stack. Each call returns an array with a new dask
    name, so napari's chunk cache never serves a plane from before the update.

    Args:
        source: The source layer's data (dask, zarr or any array-like).
        geometry: Its axes.
        planes: Replacement planes by plane index (as stored by :class:`PlaneSink`).
    """
    import uuid

    import dask.array as da

    n_lead = len(geometry.leading_shape)
    chunks = (1,) * n_lead + geometry.plane_shape
    src = (
        source.rechunk(chunks)
        if isinstance(source, da.Array)
        else da.from_array(source, chunks=chunks)
    )
    planes = dict(planes)

    def block(x: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        loc = tuple(block_info[0]["chunk-location"][:n_lead]) if block_info else ()
        if loc in planes:
            return read_plane(planes[loc]).reshape(x.shape)
        return x

    return da.map_blocks(block, src, dtype=src.dtype, name=f"rnon-result-{uuid.uuid4().hex}")


def plane_label(idx: PlaneIndex) -> str:
    """Human-readable plane index, e.g. ``"plane (3,)"`` or ``"the image"``."""
    return f"plane {idx}" if idx else "the image"
