"""The outputs of a stack run: created like INPUT, then finished (pyramid, TIFF, ``complete``).

Block tasks write level 0 of a zarr / OME-Zarr output, or a zarr staging store
(``OUTPUT.rnon-partial.zarr``) for a TIFF output. When every block is done,
:func:`finish_output` writes the lower OME levels or streams the TIFF, sets
``complete: true`` and removes the resume markers.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rnon_engine.batch.io import (
    ArrayRef,
    ImageInfo,
    create_zarr_like,
    open_array,
    write_chunks_of,
)
from rnon_engine.batch.regions import read_region
from rnon_engine.batch.resume import ATTRS_KEY

__all__ = [
    "copy_regions",
    "create_output",
    "finish_output",
    "output_ref",
    "remove_path",
    "staging_path",
    "write_attrs",
]


def staging_path(out_path: Path) -> Path:
    """The zarr staging store of a TIFF output."""
    return out_path.with_name(out_path.name + ".rnon-partial.zarr")


def remove_path(path: Path) -> None:
    """Remove a file, a link or a folder tree (a link is removed, not followed)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def create_output(image: ImageInfo, work: Path, form: str, attrs: dict[str, Any]) -> ArrayRef:
    """Create the empty output (or TIFF staging store) at ``work``; returns level 0."""
    import zarr

    if form == "ome-zarr":
        from ome_zarr.format import format_from_version
        from ome_zarr.writer import add_metadata, write_multiscales_metadata

        assert image.ome is not None
        ms = image.ome["multiscales"][0]
        fmt = format_from_version(str(image.ome["version"]))
        group = zarr.open_group(str(work), mode="w", zarr_format=image.zarr_format)
        src_root = Path(image.path)
        for path, _, _ in image.ome["levels"]:
            create_zarr_like(ArrayRef("zarr", str(src_root / path)), group, path)
        datasets = [
            {k: v for k, v in ds.items() if k in ("path", "coordinateTransformations")}
            for ds in ms["datasets"]
        ]
        write_multiscales_metadata(
            group,
            datasets=datasets,
            fmt=fmt,
            axes=ms.get("axes"),
            name=ms.get("name"),
            **({"metadata": ms["metadata"]} if ms.get("metadata") else {}),
        )
        if image.ome.get("omero"):
            add_metadata(group, {"omero": image.ome["omero"]})
        group.attrs[ATTRS_KEY] = attrs
        return ArrayRef("zarr", str(work / image.ome["levels"][0][0]))
    if form == "tiff":
        arr = zarr.create_array(
            store=str(work), shape=image.shape, dtype=image.dtype, chunks=image.chunks
        )
        arr.attrs[ATTRS_KEY] = attrs
        return ArrayRef("zarr", str(work))
    src = image.ref
    if image.component:
        group = zarr.open_group(str(work), mode="w", zarr_format=image.zarr_format)
        create_zarr_like(src, group, image.component)
        group.attrs[ATTRS_KEY] = attrs
        return ArrayRef("zarr", str(work / image.component))
    arr = create_zarr_like(src, work, None)
    arr.attrs[ATTRS_KEY] = attrs
    return ArrayRef("zarr", str(work))


def output_ref(image: ImageInfo, work: Path, form: str) -> ArrayRef:
    """Level 0 of an output that exists (a resumed run)."""
    if form == "ome-zarr":
        assert image.ome is not None
        return ArrayRef("zarr", str(work / image.ome["levels"][0][0]))
    if form == "zarr" and image.component:
        return ArrayRef("zarr", str(work / image.component))
    return ArrayRef("zarr", str(work))


def write_attrs(root: Path, attrs: dict[str, Any]) -> None:
    """Set the ``rnon_batch`` attributes of the zarr output (or staging store) at ``root``."""
    import zarr

    node = zarr.open(str(root), mode="r+")
    node.attrs[ATTRS_KEY] = attrs


def _set_complete(root: Path, attrs: dict[str, Any]) -> None:
    write_attrs(root, {**attrs, "complete": True})


def copy_regions(src: ArrayRef, dst: ArrayRef, regions: list[tuple[slice, ...]]) -> None:
    """Copy ``regions`` of array ``src`` into the same regions of zarr array ``dst``."""
    with open_array(src) as a, open_array(dst, "r+") as b:
        for region in regions:
            b[region] = read_region(a, src, region, "the existing output")


def finish_output(
    image: ImageInfo, work: Path, out_path: Path, form: str, attrs: dict[str, Any], state: Path
) -> None:
    """Lower OME levels, the final TIFF, the ``complete`` flag; remove the markers."""
    if form == "ome-zarr":
        _write_pyramid(image, work)
        _set_complete(work, attrs)
        shutil.rmtree(state, ignore_errors=True)
    elif form == "tiff":
        _write_tiff(image, work, out_path, {**attrs, "complete": True})
        shutil.rmtree(work, ignore_errors=True)
    else:
        _set_complete(work, attrs)
        shutil.rmtree(state, ignore_errors=True)


def _write_pyramid(image: ImageInfo, work: Path) -> None:
    """Levels 1.. downsampled from the repaired level 0, as ome-zarr's default pyramid."""
    import dask
    import dask.array as da
    import zarr
    from ome_zarr.dask_utils import resize

    assert image.ome is not None
    group = zarr.open_group(str(work), mode="r+")
    levels = image.ome["levels"]
    for i in range(1, len(levels)):
        prev = da.from_zarr(group[levels[i - 1][0]])
        target = group[levels[i][0]]
        lvl = resize(
            prev, levels[i][1], order=1, mode="reflect", anti_aliasing=True, preserve_range=True
        )
        if np.dtype(image.dtype).kind in "iu":
            info = np.iinfo(image.dtype)
            lvl = da.clip(da.round(lvl), info.min, info.max)
        lvl = lvl.astype(image.dtype).rechunk(write_chunks_of(target))
        with dask.config.set(scheduler="threads"):
            da.store(lvl, target, lock=False)


def _write_tiff(image: ImageInfo, work: Path, out_path: Path, attrs: dict[str, Any]) -> None:
    """Stream the finished staging array into a TIFF like the input (tiles, photometric)."""
    import tifffile
    import zarr

    assert image.tiff is not None
    arr = zarr.open_array(str(work), mode="r")
    t = image.tiff
    color = image.color_axis is not None and image.color_axis == len(image.shape) - 1
    page_nd = 3 if color else 2
    lead = image.shape[: len(image.shape) - page_nd]
    tile = t["tile"]

    def pages() -> Iterator[np.ndarray]:
        for idx in np.ndindex(*lead):
            page = np.asarray(arr[idx])
            if tile is None:
                yield page
            else:
                for y0 in range(0, page.shape[0], tile[0]):
                    for x0 in range(0, page.shape[1], tile[1]):
                        yield page[y0 : y0 + tile[0], x0 : x0 + tile[1]]

    compression = {1: None, 8: "zlib", 32946: "zlib", 50000: "zstd"}.get(t["compression"], "zlib")
    meta: dict[str, Any] = {"axes": t["axes"]}
    if t["is_ome"]:
        meta["Description"] = json.dumps({ATTRS_KEY: attrs})
    else:
        meta[ATTRS_KEY] = attrs
    tmp = out_path.with_name(f".{out_path.name}.rnon-tmp.tif")
    try:
        tifffile.imwrite(
            tmp,
            pages(),
            shape=image.shape,
            dtype=image.dtype,
            tile=tuple(tile) if tile else None,
            photometric="rgb" if color else "minisblack",
            compression=compression,
            metadata=meta,
            software="rnon-batch",
            ome=bool(t["is_ome"]),
        )
        os.replace(tmp, out_path)
    except BaseException:
        remove_path(tmp)  # no half-written TIFF left behind (full disk, Ctrl-C)
        raise
