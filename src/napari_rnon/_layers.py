"""napari layer helpers shared by the widget and the commands (no Qt, no torch)."""

from __future__ import annotations

import math
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_rnon._planes import (
    Geometry,
    PlaneIndex,
    composite,
    make_geometry,
    read_plane,
)

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels

# Mask colour: opaque magenta reads well on photographs and on grey microscopy alike.
MASK_COLOR = np.array([1.0, 0.0, 1.0, 1.0])
OUTLINE_COLOR = np.array([1.0, 0.85, 0.0, 1.0])
# A full-shape mask for a stack above this many pixels would take too much memory: the
# "New mask" button then makes one (Y, X) mask that applies to every plane.
FULL_MASK_MAX_PIXELS = 256 * 2**20
MASK_FOR_KEY = "rnon_mask_for"
# Default brush of a new mask: thin scratches and dead-pixel lines are 1-3 px wide.
THIN_BRUSH = 3
META_KEY = "rnon"
# Layer metadata key: the names of all channel layers of one multichannel image (reader).
CHANNEL_GROUP_KEY = "rnon_channels"

# Planes repaired so far for each lazily stored (dask/zarr-backed) result layer.
_LAZY_PLANES: weakref.WeakKeyDictionary[Any, dict[PlaneIndex, Any]] = weakref.WeakKeyDictionary()


def layer_data(layer: Image | Labels) -> Any:
    """Full-resolution data of a layer (level 0 of a multiscale layer)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def layer_geometry(layer: Image) -> Geometry:
    """Axes of an image layer's full-resolution data."""
    return make_geometry(tuple(layer_data(layer).shape), bool(layer.rgb))


def current_plane(viewer: napari.Viewer, layer: Image, geometry: Geometry) -> PlaneIndex:
    """Index of the plane the viewer shows for ``layer`` along its leading axes."""
    n_lead = len(geometry.leading_shape)
    if n_lead == 0:
        return ()
    world = np.asarray(viewer.dims.point, dtype=float)[-layer.ndim :]
    data_pt = np.asarray(layer.world_to_data(world), dtype=float)
    return tuple(
        int(np.clip(np.round(v), 0, s - 1))
        for v, s in zip(data_pt[:n_lead], geometry.leading_shape, strict=True)
    )


def brush_size_for(yx: tuple[int, int]) -> int:
    """A brush fit for thin scratches: 3 px, up to 10 px on very large planes (side/256)."""
    return int(np.clip(round(min(yx) / 256), THIN_BRUSH, 10))


def add_mask_layer(viewer: napari.Viewer, image: Image) -> Labels:
    """Add an empty repair-mask Labels layer for ``image`` and get it ready to paint.

    The mask has the image's spatial shape (without the colour axis of RGB images), the
    image's scale and translate, a magenta label 1, and is selected in paint mode.
    """
    from napari.utils.colormaps import DirectLabelColormap
    from napari.utils.notifications import show_info

    geometry = layer_geometry(image)
    shape = geometry.spatial_shape
    if math.prod(shape) > FULL_MASK_MAX_PIXELS and geometry.leading_shape:
        shape = geometry.yx
        show_info(
            f"'{image.name}' is large: the new mask has shape {shape} and applies to every "
            "plane. For per-plane masks, add a Labels layer of the full shape."
        )
    nd = len(shape)
    kwargs: dict[str, Any] = {
        "name": f"{image.name} repair mask",
        "scale": tuple(image.scale)[-nd:],
        "translate": tuple(image.translate)[-nd:],
        "units": tuple(image.units)[-nd:],
        "axis_labels": tuple(image.axis_labels)[-nd:],
        "opacity": 0.7,
        "metadata": {MASK_FOR_KEY: image.name},
        "colormap": DirectLabelColormap(
            color_dict={None: MASK_COLOR, 0: np.zeros(4), 1: MASK_COLOR}
        ),
    }
    if nd == len(geometry.spatial_shape):
        kwargs["affine"] = image.affine.affine_matrix
    layer = viewer.add_labels(np.zeros(shape, dtype=np.uint8), **kwargs)
    viewer.layers.selection.active = layer
    layer.selected_label = 1
    layer.brush_size = brush_size_for(geometry.yx)
    layer.mode = "paint"
    return layer


def find_result_layer(
    viewer: napari.Viewer, name: str, source_name: str, geometry: Geometry, dtype: Any
) -> Image | None:
    """The plugin's existing result layer ``name`` for ``source_name``, if it still fits."""
    if name not in viewer.layers:
        return None
    layer = viewer.layers[name]
    meta = layer.metadata.get(META_KEY) if hasattr(layer, "metadata") else None
    from napari.layers import Image

    if (
        not isinstance(layer, Image)
        or not isinstance(meta, dict)
        or meta.get("source") != source_name
        or tuple(layer_data(layer).shape) != geometry.shape
        or np.dtype(layer_data(layer).dtype) != np.dtype(dtype)
        or getattr(layer, "multiscale", False)
    ):
        return None
    return layer


def result_layer_kwargs(source: Image) -> dict[str, Any]:
    """Display properties copied from ``source`` onto its result layer."""
    kwargs: dict[str, Any] = {
        "scale": tuple(source.scale),
        "translate": tuple(source.translate),
        "rotate": source.rotate,
        "shear": source.shear,
        "affine": source.affine.affine_matrix,
        "units": tuple(source.units),
        "axis_labels": tuple(source.axis_labels),
        "rgb": bool(source.rgb),
        "contrast_limits": tuple(source.contrast_limits),
        "gamma": source.gamma,
        "blending": source.blending,
        "opacity": source.opacity,
    }
    if not source.rgb:
        kwargs["colormap"] = source.colormap
    return kwargs


def apply_result(
    viewer: napari.Viewer,
    source: Image,
    base_data: Any,
    geometry: Geometry,
    name: str,
    planes: dict[PlaneIndex, Any],
    provenance: dict[str, Any],
) -> Image:
    """Create or update the result layer ``name`` with the repaired ``planes``.

    Numpy sources give a numpy result (a copy of ``base_data`` with the planes written
    in); dask/zarr sources give a lazy composite that reads unchanged planes from the
    source and repaired ones from memory or a temporary zarr store. Planes repaired by an
    earlier run and not by this one are kept. The source layer is never modified.
    """
    dtype = np.dtype(base_data.dtype)
    layer = find_result_layer(viewer, name, source.name, geometry, dtype)
    meta = dict(provenance)
    if layer is not None:
        old = layer.metadata.get(META_KEY, {})
        done = {tuple(p) for p in old.get("planes_repaired", [])}
        done |= set(planes)
        meta["planes_repaired"] = sorted(done)
    else:
        meta["planes_repaired"] = sorted(planes)

    if isinstance(base_data, np.ndarray):
        if layer is not None and isinstance(layer.data, np.ndarray):
            data = layer.data
        else:
            data = _whole_result(planes, base_data)
        if data is None:
            data = np.array(base_data, copy=True)
        for idx, ref in planes.items():
            if ref is not data:
                data[idx] = read_plane(ref)
    else:
        previous = _LAZY_PLANES.get(layer, {}) if layer is not None else {}
        merged = {**previous, **planes}
        data = composite(base_data, geometry, merged)

    if layer is None:
        kwargs = result_layer_kwargs(source)
        layer = viewer.add_image(data, name=name, metadata={META_KEY: meta}, **kwargs)
    else:
        limits = tuple(layer.contrast_limits)
        if layer.data is data:
            layer.refresh()
        else:
            layer.data = data
        layer.contrast_limits = limits
        layer.metadata = {**layer.metadata, META_KEY: meta}
    if not isinstance(data, np.ndarray):
        _LAZY_PLANES[layer] = merged
    return layer


def _whole_result(planes: dict[PlaneIndex, Any], base_data: np.ndarray) -> np.ndarray | None:
    """The repaired array itself, when it is the whole new layer's data; else None.

    A 2-D image's run returns one plane, a new array of the source's shape and dtype that
    nothing else holds: it becomes the layer's data as it is, without a copy of the source
    to write it into (two passes over a 4096² RGB image, and the new array's page faults).
    Never an array that may share the source's memory: later runs write into the layer.
    """
    if len(planes) != 1:
        return None
    (ref,) = planes.values()
    if (
        isinstance(ref, np.ndarray)
        and ref.base is None
        and ref.flags.writeable
        and ref.shape == base_data.shape
        and ref.dtype == base_data.dtype
        and not np.may_share_memory(ref, base_data)
    ):
        return ref
    return None


def update_outline(viewer: napari.Viewer, source: Image, mask_layer: Labels, name: str) -> Labels:
    """Show the outline of the mask used for ``source`` in a Labels layer ``name``."""
    from napari.utils.colormaps import DirectLabelColormap

    mask = layer_data(mask_layer)
    if isinstance(mask, np.ndarray):
        data = (mask != 0).astype(np.uint8)
    else:
        import dask.array as da

        data = (da.asarray(mask) != 0).astype(np.uint8)
    from napari.layers import Labels

    if name in viewer.layers and isinstance(viewer.layers[name], Labels):
        layer = viewer.layers[name]
        layer.data = data
        return layer
    layer = viewer.add_labels(
        data,
        name=name,
        scale=tuple(mask_layer.scale),
        translate=tuple(mask_layer.translate),
        opacity=1.0,
        colormap=DirectLabelColormap(
            color_dict={None: OUTLINE_COLOR, 0: np.zeros(4), 1: OUTLINE_COLOR}
        ),
        metadata={META_KEY: {"outline_of": source.name}},
    )
    layer.contour = 1
    return layer


def _array_parent(data: Any) -> Any:
    """What a channel layer's array was cut from: the numpy base, or the dask parents."""
    if isinstance(data, np.ndarray):
        return id(data.base) if data.base is not None else None
    graph = getattr(data, "__dask_graph__", None)
    name = getattr(data, "name", None)
    if graph is None or name is None:
        return None
    deps = getattr(graph(), "dependencies", {}).get(name)
    return frozenset(deps) if deps else None


def channel_layers(viewer: napari.Viewer, layer: Image) -> list[Image]:
    """The channel layers of the multichannel image ``layer`` belongs to, in list order.

    napari splits an image opened with ``channel_axis`` into one layer per channel; they
    are recognised by this plugin's reader (their names in the metadata), or as arrays
    cut from one array (numpy views of one base, dask slices of one parent) with the
    same shape, dtype, scale and translate. A layer on its own gives ``[layer]``.
    """
    from napari.layers import Image

    names = layer.metadata.get(CHANNEL_GROUP_KEY)
    if isinstance(names, list) and layer.name in names:
        return [ly for ly in viewer.layers if ly.name in names and isinstance(ly, Image)]
    if layer.rgb or META_KEY in layer.metadata:
        return [layer]
    data = layer_data(layer)
    parent = _array_parent(data)
    if parent is None:
        return [layer]
    group = []
    for other in viewer.layers:
        if not isinstance(other, Image) or other.rgb or META_KEY in other.metadata:
            continue
        od = layer_data(other)
        if (
            _array_parent(od) == parent
            and tuple(od.shape) == tuple(data.shape)
            and od.dtype == data.dtype
            and np.allclose(other.scale, layer.scale)
            and np.allclose(other.translate, layer.translate)
        ):
            group.append(other)
    return group if layer in group else [layer]


def place_on_top(viewer: napari.Viewer, layers: list[Any]) -> None:
    """Move ``layers`` to the top of the layer list, in the given order, and show them."""
    for layer in layers:
        index = viewer.layers.index(layer)
        viewer.layers.move(index, len(viewer.layers))
        layer.visible = True
