"""OME-Zarr images for the plugin: describe one, read and write its repair mask.

An OME-Zarr image keeps its repair mask as the OME-NGFF label image ``labels/repair``
(where ``rnon-batch`` finds it when no ``--mask`` is given; see docs/batch.md,
"Workflow: napari → rnon-batch"). This module needs only zarr, numpy and ome-zarr: no Qt,
no magicgui, no torch, so napari's reader (:mod:`napari_rnon._reader`) stays light.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_rnon._planes import UserError

__all__ = [
    "OME_KEY",
    "REPAIR_LABEL",
    "OmeImage",
    "find_ome_root",
    "layer_ome_image",
    "multiscales",
    "open_ome_image",
    "read_repair_label",
    "save_repair_label",
]

OME_KEY = "rnon_ome"
"""Layer metadata key: ``{"path": <OME-Zarr image root>, ...}`` on layers read from OME-Zarr."""
REPAIR_LABEL = "repair"
"""Name of the label image that holds the repair mask: ``<image>/labels/repair``."""


@dataclass(frozen=True)
class OmeImage:
    """An OME-Zarr image group (NGFF 0.4 on zarr v2, or 0.5 on zarr v3).

    Attributes:
        path: The image group's directory.
        name: A display name (the directory name without ``.ome.zarr`` / ``.zarr``).
        version: NGFF version (``"0.4"``, ``"0.5"``).
        zarr_format: 2 or 3.
        axes: The ``multiscales.axes`` entries (dicts with ``name``, maybe ``type``/``unit``).
        datasets: Level paths, full resolution first.
        shape: Shape of the full-resolution level.
        chunks: Chunks of the full-resolution level.
        scale: Level-0 scale per axis (1.0 when absent).
        translation: Level-0 translation per axis (0.0 when absent).
        omero: The ``omero`` rendering metadata, if any.
    """

    path: Path
    name: str
    version: str
    zarr_format: int
    axes: tuple[dict[str, Any], ...]
    datasets: tuple[str, ...]
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    scale: tuple[float, ...]
    translation: tuple[float, ...]
    omero: dict[str, Any] | None = None

    @property
    def axis_names(self) -> tuple[str, ...]:
        """Lower-case axis names, e.g. ``("z", "y", "x")``."""
        return tuple(str(a.get("name", "")).lower() for a in self.axes)

    @property
    def axis_units(self) -> tuple[str | None, ...]:
        """The ``unit`` of each axis (``"micrometer"``...), None where the file gives none."""
        return tuple(str(a["unit"]) if a.get("unit") else None for a in self.axes)

    @property
    def channel_axis(self) -> int | None:
        """Index of the channel axis (``c`` or type ``channel``), if any."""
        for i, a in enumerate(self.axes):
            if str(a.get("name", "")).lower() == "c" or a.get("type") == "channel":
                return i
        return None

    @property
    def label_path(self) -> Path:
        """Where the repair mask lives: ``<image>/labels/repair``."""
        return self.path / "labels" / REPAIR_LABEL

    @property
    def has_repair_label(self) -> bool:
        """True when ``labels/repair`` exists."""
        return self.label_path.is_dir()


def multiscales(attrs: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]] | None]:
    """The NGFF version and ``multiscales`` of a group's attributes (0.5: under ``"ome"``)."""
    ome = attrs.get("ome")
    if isinstance(ome, dict) and ome.get("multiscales"):
        return ome.get("version"), ome["multiscales"]
    ms = attrs.get("multiscales")
    if ms:
        return ms[0].get("version"), ms
    return None, None


def _level0_transform(ms: dict[str, Any], ndim: int) -> tuple[tuple[float, ...], ...]:
    scale, translation = [1.0] * ndim, [0.0] * ndim
    for t in ms["datasets"][0].get("coordinateTransformations", []) or []:
        if t.get("type") == "scale" and len(t.get("scale", [])) == ndim:
            scale = [float(v) for v in t["scale"]]
        elif t.get("type") == "translation" and len(t.get("translation", [])) == ndim:
            translation = [float(v) for v in t["translation"]]
    return tuple(scale), tuple(translation)


def _display_name(path: Path) -> str:
    name = path.name
    for suffix in (".ome.zarr", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return name


def open_ome_image(path: str | Path) -> OmeImage | None:
    """Describe the OME-Zarr image group at ``path``, or None when it is not one.

    Plates, wells, label images and plain zarr arrays are not images here (None).
    """
    import zarr

    p = Path(path).expanduser()
    if not p.is_dir():
        return None
    try:
        group = zarr.open_group(str(p), mode="r")
    except Exception:
        return None
    attrs = dict(group.attrs)
    version, ms = multiscales(attrs)
    if not ms or "image-label" in attrs.get("ome", attrs):
        return None
    m0 = ms[0]
    try:
        datasets = tuple(str(d["path"]) for d in m0["datasets"])
        arr = group[datasets[0]]
    except Exception:
        return None
    shape = tuple(int(s) for s in arr.shape)
    axes_meta = m0.get("axes") or []
    if axes_meta and isinstance(axes_meta[0], str):  # NGFF 0.3: a list of names
        axes_meta = [{"name": a} for a in axes_meta]
    if len(axes_meta) != len(shape):
        axes_meta = [{"name": n} for n in "tczyx"[-len(shape) :]] if len(shape) <= 5 else []
    scale, translation = _level0_transform(m0, len(shape))
    return OmeImage(
        path=p.resolve(),
        name=_display_name(p.resolve()),
        version=str(version or "0.4"),
        zarr_format=int(arr.metadata.zarr_format),
        axes=tuple(dict(a) for a in axes_meta),
        datasets=datasets,
        shape=shape,
        chunks=tuple(int(c) for c in arr.chunks),
        scale=scale,
        translation=translation,
        omero=attrs.get("ome", attrs).get("omero"),
    )


def find_ome_root(path: str | Path | None) -> OmeImage | None:
    """The OME-Zarr image at ``path`` or at one of its two parents (``stack.zarr/s0``)."""
    if not path:
        return None
    p = Path(str(path).rstrip("/\\")).expanduser()
    for candidate in (p, p.parent, p.parent.parent):
        info = open_ome_image(candidate)
        if info is not None:
            return info
    return None


def layer_ome_image(layer: Any) -> OmeImage | None:
    """The OME-Zarr image a layer was read from (this plugin's reader, or ``source.path``)."""
    if layer is None:
        return None
    meta = getattr(layer, "metadata", {}) or {}
    ome = meta.get(OME_KEY)
    if isinstance(ome, dict) and ome.get("path"):
        info = open_ome_image(ome["path"])
        if info is not None:
            return info
    source = getattr(layer, "source", None)
    return find_ome_root(getattr(source, "path", None))


def read_repair_label(info: OmeImage) -> np.ndarray | None:
    """The full-resolution level of ``labels/repair`` as a numpy array, or None."""
    import zarr

    if not info.has_repair_label:
        return None
    group = zarr.open_group(str(info.label_path), mode="r")
    _, ms = multiscales(dict(group.attrs))
    if not ms:
        return None
    return np.asarray(group[str(ms[0]["datasets"][0]["path"])][...])


def save_repair_label(
    root: str | Path, mask: Any, *, replace: bool = False, image: OmeImage | None = None
) -> Path:
    """Write ``mask`` as the OME-NGFF label image ``<root>/labels/repair``.

    One resolution level, written with ``ome_zarr.writer.write_labels`` in the image's NGFF
    version and zarr format, with the image's axes, units, level-0 scale and chunks for the
    mask's (trailing) dimensions (ome-zarr writes no translation for labels). Only
    ``labels/`` is written: the image's own arrays and attributes are left as they are.

    Args:
        root: The OME-Zarr image directory.
        mask: Integer array, nonzero = repair; the image's full shape or a trailing part of
            it (at least YX, broadcast over the leading axes by ``rnon-batch``).
        replace: Replace an existing ``labels/repair``; otherwise that is an error.
        image: ``open_ome_image(root)`` if already known.

    Returns:
        The label image's path.

    Raises:
        UserError: ``root`` is not an OME-Zarr image, the mask does not fit, or a repair
            label exists and ``replace`` is False.
    """
    import zarr
    from ome_zarr.format import format_from_version
    from ome_zarr.writer import write_labels

    info = image or open_ome_image(root)
    if info is None:
        raise UserError(f"{str(root)!r} is not an OME-Zarr image; the mask cannot be saved there.")
    data = np.asarray(mask)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    if data.dtype.kind not in "iu":
        raise UserError(f"A repair mask must hold integers (labels), not {data.dtype}.")
    nd = data.ndim
    if nd < 2 or nd > len(info.shape) or tuple(data.shape) != info.shape[-nd:]:
        raise UserError(
            f"The mask has shape {tuple(data.shape)} but the OME-Zarr image {info.name!r} has "
            f"shape {info.shape} (axes {''.join(info.axis_names)}): the mask must have the "
            f"image's shape or a trailing part of it, such as {info.shape[-2:]}."
        )
    if info.has_repair_label and not replace:
        raise UserError(f"{info.label_path} exists already; pass replace=True to replace it.")
    names = info.axis_names[-nd:]
    units = {
        n: str(a["unit"]) for n, a in zip(names, info.axes[-nd:], strict=True) if a.get("unit")
    }
    if info.has_repair_label:
        shutil.rmtree(info.label_path)
    group = zarr.open_group(str(info.path), mode="r+")
    write_labels(
        data,
        group,
        name=REPAIR_LABEL,
        scaler=None,
        scale_factors=[],
        fmt=format_from_version(info.version),
        axes=[dict(a) for a in info.axes[-nd:]],
        scale=dict(zip(names, info.scale[-nd:], strict=True)),
        axes_units=units or None,
        storage_options={
            "chunks": tuple(min(c, s) for c, s in zip(info.chunks[-nd:], data.shape, strict=True))
        },
    )
    return info.label_path
