"""Readers and writers for ``rnon-batch``: zarr (v2/v3), OME-Zarr, TIFF/OME-TIFF, image files.

Everything a task needs to reach an array is a small picklable :class:`ArrayRef` (a path
and a kind); the array itself is opened inside the task with :func:`open_array`, because
tifffile's zarr store cannot be pickled and a zarr array should not travel through a
dask graph.

Axes follow :mod:`rnon_engine.batch.axes`; masks are fitted to an image in
:mod:`rnon_engine.batch.masks`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rnon_engine.batch.axes import (
    colour_axis,
    default_axes,
    letters_from_names,
    resolve_axes,
)
from rnon_engine.errors import InputError
from rnon_engine.inference.layout import PlaneLayout

__all__ = [
    "IMAGE_SUFFIXES",
    "TIFF_SUFFIXES",
    "ArrayRef",
    "ImageInfo",
    "block_in_order",
    "classify_path",
    "describe_input",
    "describe_image_file",
    "open_array",
    "read_image_file",
    "read_image_header",
    "write_image_file",
    "create_zarr_like",
    "write_chunks_of",
    "pair_folder",
    "read_json",
]

TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", *TIFF_SUFFIXES)
_ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup", ".zattrs")


@dataclass(frozen=True)
class ArrayRef:
    """A picklable pointer to an on-disk array, opened inside each task.

    Attributes:
        kind: ``"zarr"`` (a zarr array directory, v2 or v3), ``"tiff"`` (series 0, level 0
            of a TIFF file, read through tifffile's zarr interface) or ``"image"`` (a
            whole image file read into memory).
        path: Absolute path of the array directory or file.
    """

    kind: str
    path: str


@contextlib.contextmanager
def open_array(ref: ArrayRef, mode: str = "r") -> Iterator[Any]:
    """Open ``ref`` as an array that supports numpy slicing; closes its store on exit."""
    if ref.kind == "zarr":
        import zarr

        yield zarr.open_array(ref.path, mode=mode)
    elif ref.kind == "tiff":
        import tifffile
        import zarr

        store = tifffile.imread(ref.path, aszarr=True, series=0, level=0)
        try:
            yield zarr.open_array(store, mode="r")
        finally:
            store.close()
    elif ref.kind == "image":
        yield read_image_file(ref.path)
    else:  # pragma: no cover - programming error
        raise ValueError(f"unknown array kind {ref.kind!r}")


@dataclass(frozen=True)
class ImageInfo:
    """What the plan needs to know about INPUT (or a mask).

    Attributes:
        form: ``"zarr"``, ``"ome-zarr"``, ``"tiff"``, ``"ome-tiff"`` or ``"image"``.
        path: The path the user gave, resolved.
        ref: Where the full-resolution array is.
        shape: Its shape.
        dtype: Its dtype (numpy string).
        chunks: Its storage chunks (whole array for an image file).
        write_chunks: The unit a writer must own: shards when sharded, else chunks.
        axes: One letter per dimension (see the module docstring).
        axes_source: Where ``axes`` came from (``"ome"``, ``"--axes"``, ``"dimension_names"``,
            ``"rule"``).
        color_axis: Index of the channel axis handed to the engine as colour (size 3 or 4),
            or None when channels (if any) are inpainted one by one.
        component: For a zarr group input that is not OME, the array's name inside it.
        zarr_format: 2 or 3 for zarr inputs.
        ome: For OME-Zarr: ``{"version", "multiscales", "omero", "levels": [(path, shape,
            chunks)]}``.
        tiff: For TIFF: ``{"tile", "compression", "photometric", "is_ome", "axes"}``.
    """

    form: str
    path: str
    ref: ArrayRef
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    write_chunks: tuple[int, ...]
    axes: str
    axes_source: str
    color_axis: int | None
    component: str = ""
    zarr_format: int | None = None
    ome: dict[str, Any] | None = field(default=None, compare=False)
    tiff: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def y(self) -> int:
        """Index of the Y axis."""
        return self.axes.index("Y")

    @property
    def x(self) -> int:
        """Index of the X axis."""
        return self.axes.index("X")

    @property
    def lead_axes(self) -> list[int]:
        """Indices of the leading (plane) axes: every axis but Y, X and colour, in order."""
        return [d for d in range(len(self.shape)) if d not in (self.y, self.x, self.color_axis)]

    @property
    def plane_order(self) -> list[int]:
        """The transpose that puts INPUT in the engine's order: leading, Y, X, colour."""
        return [*self.lead_axes, self.y, self.x] + (
            [] if self.color_axis is None else [self.color_axis]
        )

    def layout_of(self, shape: tuple[int, ...]) -> PlaneLayout:
        """The plane layout of an array with INPUT's axes and ``shape`` (e.g. a window).

        It describes the array transposed by :attr:`plane_order`: the colour axis (if any)
        is the channel axis, inpainted as one group; channels that are not colour are
        leading axes, inpainted one by one.
        """
        ordered = tuple(int(shape[d]) for d in self.plane_order)
        return PlaneLayout(ordered, None if self.color_axis is None else len(ordered) - 1)

    @property
    def layout(self) -> PlaneLayout:
        """The plane layout of the whole of INPUT (see :meth:`layout_of`)."""
        return self.layout_of(self.shape)

    @property
    def planes(self) -> int:
        """Number of YX planes (colour channels count once)."""
        return self.layout.n_planes


def _is_zarr_dir(p: Path) -> bool:
    return p.is_dir() and any((p / m).exists() for m in _ZARR_MARKERS)


def classify_path(path: str | os.PathLike, what: str = "INPUT") -> str:
    """Say what ``path`` is: ``"zarr"``, ``"tiff"``, ``"image"`` or ``"folder"``.

    Raises:
        InputError: it does not exist or is not a supported kind.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} {str(path)!r} does not exist.")
    if p.is_dir():
        return "zarr" if _is_zarr_dir(p) else "folder"
    suffix = p.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    raise InputError(
        f"{what} {str(path)!r} is not a supported kind: give a zarr / OME-Zarr directory, a "
        f"TIFF file, an image file ({', '.join(IMAGE_SUFFIXES)}) or a folder of images."
    )


def _ome_multiscales(attrs: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]] | None]:
    if "ome" in attrs and isinstance(attrs["ome"], dict):
        ome = attrs["ome"]
        return ome.get("version"), ome.get("multiscales")
    if "multiscales" in attrs:
        ms = attrs["multiscales"]
        version = ms[0].get("version") if ms else None
        return version, ms
    return None, None


def write_chunks_of(arr: Any) -> tuple[int, ...]:
    """The unit a writer of zarr array ``arr`` must own: its shards when sharded, else chunks."""
    shards = getattr(arr, "shards", None)
    return tuple(int(c) for c in (shards or arr.chunks))


def describe_input(
    path: str | os.PathLike,
    *,
    axes: str | None = None,
    what: str = "INPUT",
) -> ImageInfo:
    """Open ``path`` (zarr, OME-Zarr, TIFF or an image file) and describe its full-res array.

    Raises:
        InputError: missing, unreadable, unsupported, or the axes do not fit.
    """
    p = Path(path).resolve()
    kind = classify_path(p, what)
    if kind == "folder":
        raise InputError(f"{what} {str(path)!r} is a folder, not an image.")
    try:
        if kind == "zarr":
            return _describe_zarr(p, axes, what)
        if kind == "tiff":
            return _describe_tiff(p, axes, what)
        data = read_image_file(p)
    except InputError:
        raise
    except Exception as exc:  # any reader failure is the file's fault
        raise InputError(f"cannot read {what} {str(path)!r}: {exc}") from exc
    return describe_image_file(p, data.shape, data.dtype, axes)


def describe_image_file(
    path: str | os.PathLike, shape: tuple[int, ...], dtype: Any, axes: str | None
) -> ImageInfo:
    """The description of an image file of ``shape`` and ``dtype`` (read whole by a task).

    Its axes come from ``--axes`` or the image-file rule (a trailing 3 or 4 is colour).
    """
    shape = tuple(int(s) for s in shape)
    ax, src = resolve_axes(None, "rule", axes, shape, image_file=True)
    return ImageInfo(
        form="image",
        path=str(path),
        ref=ArrayRef("image", str(path)),
        shape=shape,
        dtype=str(np.dtype(dtype)),
        chunks=shape,
        write_chunks=shape,
        axes=ax,
        axes_source=src,
        color_axis=colour_axis(ax, shape, True),
    )


def _describe_zarr(p: Path, axes: str | None, what: str) -> ImageInfo:
    import zarr

    node = zarr.open(str(p), mode="r")
    if isinstance(node, zarr.Array):
        arr, arr_path, component = node, p, ""
        version, ms = None, None
    else:
        attrs = dict(node.attrs)
        version, ms = _ome_multiscales(attrs)
        if "plate" in attrs.get("ome", attrs) or "well" in attrs.get("ome", attrs):
            raise InputError(
                f"{what} {str(p)!r} is an OME-Zarr plate/well; give the path of one image "
                "inside it (e.g. plate.zarr/A/1/0)."
            )
        if ms:
            return _describe_ome(p, node, version, ms, axes, what)
        names = sorted(node.array_keys())
        if len(names) != 1:
            raise InputError(
                f"{what} {str(p)!r} is a zarr group with {len(names)} arrays "
                f"({', '.join(names) or 'none'}); give the path of one array, e.g. "
                f"{str(p / names[0]) if names else str(p) + '/NAME'!r}."
            )
        component = names[0]
        arr, arr_path = node[component], p / component
    shape = tuple(int(s) for s in arr.shape)
    dim_names = getattr(arr.metadata, "dimension_names", None)
    meta = letters_from_names(list(dim_names)) if dim_names and all(dim_names) else None
    ax, src = resolve_axes(meta, "dimension_names", axes, shape)
    return ImageInfo(
        form="zarr",
        path=str(p),
        ref=ArrayRef("zarr", str(arr_path)),
        shape=shape,
        dtype=str(arr.dtype),
        chunks=tuple(int(c) for c in arr.chunks),
        write_chunks=write_chunks_of(arr),
        axes=ax,
        axes_source=src,
        color_axis=None,
        component=component,
        zarr_format=int(arr.metadata.zarr_format),
    )


def _describe_ome(
    p: Path, group: Any, version: str | None, ms: list[dict], axes: str | None, what: str
) -> ImageInfo:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    loc = parse_url(str(p))
    if loc is None:
        raise InputError(f"ome-zarr cannot read {what} {str(p)!r}.")
    nodes = list(Reader(loc)())
    specs = [s for n in nodes[:1] for s in n.specs if isinstance(s, Multiscales)]
    if not specs:
        raise InputError(f"{what} {str(p)!r} has no readable OME multiscales image.")
    node = nodes[0]
    datasets = specs[0].datasets
    ome_axes = node.metadata.get("axes")
    if ome_axes:
        names = [a["name"] if isinstance(a, dict) else a for a in ome_axes]
        types = [a.get("type") if isinstance(a, dict) else None for a in ome_axes]
        meta = letters_from_names(names, types)
    else:
        meta = None
    levels = []
    for ds in datasets:
        a = group[ds]
        levels.append((ds, tuple(int(s) for s in a.shape), tuple(int(c) for c in a.chunks)))
    arr = group[datasets[0]]
    shape = levels[0][1]
    if meta is not None:
        ax, src = resolve_axes(meta, "ome", axes, shape)
    else:
        ax, src = resolve_axes(None, "rule", axes, shape)
    attrs = dict(group.attrs)
    omero = attrs.get("ome", attrs).get("omero")
    return ImageInfo(
        form="ome-zarr",
        path=str(p),
        ref=ArrayRef("zarr", str(p / datasets[0])),
        shape=shape,
        dtype=str(arr.dtype),
        chunks=levels[0][2],
        write_chunks=write_chunks_of(arr),
        axes=ax,
        axes_source=src,
        color_axis=None,
        zarr_format=int(arr.metadata.zarr_format),
        ome={
            "version": version or "0.4",
            "multiscales": ms,
            "omero": omero,
            "levels": levels,
        },
    )


def _describe_tiff(p: Path, axes: str | None, what: str) -> ImageInfo:
    import tifffile
    import zarr

    try:
        with tifffile.TiffFile(str(p)) as tf:
            series = tf.series[0]
            page = series.keyframe
            is_ome = bool(tf.is_ome)
            t_axes = series.axes
            tiff = {
                "tile": tuple(int(t) for t in page.tile) if page.is_tiled else None,
                "compression": int(page.compression),
                "photometric": int(page.photometric),
                "is_ome": is_ome,
                "axes": t_axes,
            }
        store = tifffile.imread(str(p), aszarr=True, series=0, level=0)
        try:
            arr = zarr.open_array(store, mode="r")
            shape = tuple(int(s) for s in arr.shape)
            dtype = str(arr.dtype)
            chunks = tuple(int(c) for c in arr.chunks)
        finally:
            store.close()
    except Exception as exc:
        raise InputError(f"cannot read {what} {str(p)!r} as TIFF: {exc}") from exc
    letters = t_axes.upper().replace("I", "Q")
    if "S" in letters:
        if "C" in letters:
            letters = letters.replace("C", "Q")
        letters = letters.replace("S", "C")
    letters = "".join(c if c in "TCZYXQ" else "Q" for c in letters)
    if is_ome:
        ax, src = resolve_axes(letters, "ome", axes, shape)
    elif axes is not None:
        ax, src = resolve_axes(None, "rule", axes, shape)
    elif letters.endswith("YXC") and shape[-1] in (3, 4):
        ax, src = "Q" * (len(shape) - 3) + "YXC", "rule"
    else:
        ax, src = default_axes(shape), "rule"
    return ImageInfo(
        form="ome-tiff" if is_ome else "tiff",
        path=str(p),
        ref=ArrayRef("tiff", str(p)),
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        write_chunks=chunks,
        axes=ax,
        axes_source=src,
        color_axis=colour_axis(ax, shape, "S" in t_axes.upper() or src == "rule"),
        tiff=tiff,
    )


# --------------------------------------------------------------------------- files


def read_image_file(path: str | os.PathLike) -> np.ndarray:
    """Read a whole image file (TIFF via tifffile, others via imageio)."""
    path = str(path)
    if path.lower().endswith(TIFF_SUFFIXES):
        import tifffile

        return tifffile.imread(path)
    import imageio.v3 as iio

    return np.asarray(iio.imread(path))


def read_image_header(path: str | os.PathLike, what: str = "image") -> tuple[tuple[int, ...], str]:
    """Shape and dtype of an image file from its header (TIFF series 0, or imageio).

    Raises:
        InputError: the file cannot be read.
    """
    p = str(path)
    try:
        if p.lower().endswith(TIFF_SUFFIXES):
            import tifffile

            with tifffile.TiffFile(p) as tf:
                series = tf.series[0]
                return tuple(int(s) for s in series.shape), str(series.dtype)
        import imageio.v3 as iio

        props = iio.improps(p)
        return tuple(int(s) for s in props.shape), str(props.dtype)
    except Exception as exc:
        raise InputError(f"cannot read {what} {p!r}: {exc}") from exc


def write_image_file(
    path: str | os.PathLike,
    data: np.ndarray,
    *,
    color: bool = False,
    description: dict[str, Any] | None = None,
) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file in the same folder, renamed).

    TIFF through tifffile (provenance in its metadata), other formats through imageio.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.rnon-tmp{path.suffix}")
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            tifffile.imwrite(
                tmp,
                data,
                photometric="rgb" if color and data.shape[-1] in (3, 4) else "minisblack",
                metadata={"rnon_batch": description} if description else {},
                software="rnon-batch",
            )
        else:
            import imageio.v3 as iio

            iio.imwrite(tmp, data, extension=path.suffix)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()  # no half-written file left behind (full disk, Ctrl-C)
        raise


def pair_folder(images: Path, masks: Path | None) -> list[tuple[str, str | None]]:
    """Image files of ``images`` (sorted) with their same-named masks in ``masks``.

    A mask matches by file name, or else by name without suffix (``a.tif`` ↔ ``a.png``).

    Raises:
        InputError: no image files, or an image without a mask.
    """
    files = sorted(
        f
        for f in images.iterdir()
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
    )
    if not files:
        raise InputError(
            f"INPUT folder {str(images)!r} holds no image files ({', '.join(IMAGE_SUFFIXES)})."
        )
    if masks is None:
        return [(str(f), None) for f in files]
    if not masks.is_dir():
        raise InputError(
            f"INPUT is a folder, so MASK must be a folder of same-named masks; "
            f"{str(masks)!r} is not a folder."
        )
    by_stem: dict[str, Path] = {}
    for m in masks.iterdir():
        if m.is_file() and m.suffix.lower() in IMAGE_SUFFIXES:
            by_stem.setdefault(m.stem, m)
    pairs, missing = [], []
    for f in files:
        m = masks / f.name
        if not m.is_file():
            m = by_stem.get(f.stem)
        if m is None:
            missing.append(f.name)
        else:
            pairs.append((str(f), str(m)))
    if missing:
        raise InputError(
            f"no mask in {str(masks)!r} for {len(missing)} image(s): "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; a mask must have "
            "the image's file name (or the same name with another suffix)."
        )
    return pairs


# --------------------------------------------------------------------------- zarr output


def create_zarr_like(
    src_ref: ArrayRef, dest: Any, name: str | None, *, fill_value: Any = None
) -> Any:
    """Create an empty zarr array like ``src_ref`` (shape, dtype, chunks, shards, codecs).

    Args:
        src_ref: A zarr array to copy the layout of.
        dest: A path (the array is the store's root) or a ``zarr.Group``.
        name: Array name inside ``dest`` when it is a group.
        fill_value: Override the fill value (default: the source's).
    """
    import zarr

    with open_array(src_ref) as src:
        md = src.metadata
        kw: dict[str, Any] = {
            "shape": src.shape,
            "dtype": src.dtype,
            "chunks": src.chunks,
            "fill_value": src.fill_value if fill_value is None else fill_value,
            "compressors": src.compressors,
            "filters": src.filters,
            "zarr_format": md.zarr_format,
        }
        if md.zarr_format == 3:
            kw["shards"] = src.shards
            kw["dimension_names"] = md.dimension_names
            kw["chunk_key_encoding"] = md.chunk_key_encoding
            kw["serializer"] = src.serializer
        else:
            kw["chunk_key_encoding"] = {"name": "v2", "separator": md.dimension_separator}
        if isinstance(dest, zarr.Group):
            kw.pop("zarr_format")
            return dest.create_array(name, **kw)
        return zarr.create_array(store=str(dest), **kw)


def read_json(path: Path) -> dict[str, Any] | None:
    """Read a JSON file, or None when it is missing or not JSON."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def block_in_order(
    data: np.ndarray,
    m: np.ndarray,
    inner: tuple[slice, ...],
    order: list[int],
    color_axis: int | None,
) -> tuple[np.ndarray, np.ndarray, tuple[slice, ...], np.ndarray]:
    """A block's pixels, mask and inner slices transposed to ``order`` (planes, Y, X, colour).

    Returns ``(data, mask, inner, out)``: the transposed views, the mask broadcast over the
    block without its colour axis, and a writable copy of the data to repair into.
    """
    mshape = tuple(1 if d == color_axis else s for d, s in enumerate(data.shape))
    mt = np.transpose(np.broadcast_to(m, mshape), order)
    if color_axis is not None:
        mt = mt[..., 0]
    dt = np.transpose(data, order)
    return dt, mt, tuple(inner[d] for d in order), np.array(dt, copy=True)
