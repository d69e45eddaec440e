"""napari's reader for OME-Zarr images: the image (lazy) plus its repair mask.

Reading needs zarr, dask, numpy and ome-zarr metadata only: this module imports no Qt
widget toolkit, no magicgui and no torch, so opening a ``.zarr`` stays fast (a test holds
it to that).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from napari_rnon._layers import CHANNEL_GROUP_KEY, MASK_COLOR, MASK_FOR_KEY
from napari_rnon._ome_io import OME_KEY, REPAIR_LABEL, open_ome_image, read_repair_label
from napari_rnon._planes import UserError

__all__ = ["napari_get_reader", "napari_units", "read_ome_zarr"]


def napari_get_reader(path: str | list[str]) -> Callable[[Any], list[tuple]] | None:
    """npe2 reader: accept one OME-Zarr image directory, else return None."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    if open_ome_image(path) is None:
        return None
    return read_ome_zarr


def napari_units(units: tuple[str | None, ...]) -> tuple[str, ...] | None:
    """OME axis units as napari takes them (``"pixel"`` where none is given).

    Returns None when no axis has a unit, or when one is not a unit napari knows (pint),
    so that such a file still opens (in pixels).
    """
    if not any(units):
        return None
    import pint

    registry = pint.get_application_registry()
    out = []
    for unit in units:
        if not unit:
            out.append("pixel")
            continue
        try:
            registry.Unit(unit)
        except Exception:
            return None
        out.append(unit)
    return tuple(out)


def read_ome_zarr(path: str | list[str]) -> list[tuple]:
    """Read an OME-Zarr image lazily, plus its ``labels/repair`` as the repair mask.

    Returns napari layer-data tuples: the image (dask arrays over every level, multiscale
    when there are several, with the OME axes, units, scale and translation; a channel
    axis is split into one layer per channel, named from ``omero``), then, when
    ``labels/repair`` exists, a Labels layer ``"<name> repair mask"`` in memory (so it
    can be painted) that the Inpaint widget picks as the mask for the image.
    """
    import dask.array as da
    import zarr

    if isinstance(path, (list, tuple)):
        path = path[0]
    info = open_ome_image(path)
    if info is None:
        raise UserError(f"{path!r} is not an OME-Zarr image.")
    group = zarr.open_group(str(info.path), mode="r")
    levels = [da.from_zarr(group[d]) for d in info.datasets]
    names = info.axis_names
    scale, translate = list(info.scale), list(info.translation)
    labels = [n if n else f"axis {i}" for i, n in enumerate(names)]
    units = list(info.axis_units)
    kwargs: dict[str, Any] = {"name": info.name}
    c = info.channel_axis
    first_name = info.name
    metadata: dict[str, Any] = {OME_KEY: {"path": str(info.path), "axes": "".join(names)}}
    if c is not None:
        del scale[c], translate[c], labels[c], units[c]
        kwargs["channel_axis"] = c
        channels = (info.omero or {}).get("channels") or []
        if len(channels) == info.shape[c]:
            kwargs["name"] = [
                str(ch.get("label") or f"{info.name} c{i}") for i, ch in enumerate(channels)
            ]
        else:
            kwargs["name"] = [f"{info.name} c{i}" for i in range(info.shape[c])]
        first_name = kwargs["name"][0]
        metadata[CHANNEL_GROUP_KEY] = list(kwargs["name"])
    napari_unit = napari_units(tuple(units))
    kwargs.update(
        scale=tuple(scale),
        translate=tuple(translate),
        axis_labels=tuple(labels),
        multiscale=len(levels) > 1,
        metadata=metadata,
    )
    if napari_unit is not None:
        kwargs["units"] = napari_unit
    data: Any = levels if len(levels) > 1 else levels[0]
    out: list[tuple] = [(data, kwargs, "image")]
    mask = read_repair_label(info)
    if mask is not None:
        from napari.utils.colormaps import DirectLabelColormap

        nd = mask.ndim
        spatial = [i for i in range(len(info.shape)) if i != c][-nd:]
        mkw = {
            "name": f"{first_name} repair mask",
            "scale": tuple(info.scale[i] for i in spatial),
            "translate": tuple(info.translation[i] for i in spatial),
            "axis_labels": tuple(names[i] if names[i] else f"axis {i}" for i in spatial),
            "opacity": 0.7,
            "metadata": {
                MASK_FOR_KEY: first_name,
                OME_KEY: {"path": str(info.path), "label": REPAIR_LABEL},
            },
            "colormap": DirectLabelColormap(
                color_dict={None: MASK_COLOR, 0: np.zeros(4), 1: MASK_COLOR}
            ),
        }
        mask_units = napari_units(tuple(info.axis_units[i] for i in spatial))
        if mask_units is not None:
            mkw["units"] = mask_units
        out.append((mask, mkw, "labels"))
    return out
