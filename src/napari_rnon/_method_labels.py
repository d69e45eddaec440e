"""The "which method filled which pixel" Labels layer of an ``auto`` run (no Qt, no torch).

The label image comes from the engine's router
(:func:`rnon_engine.inference.routing.method_labels`, torch-free) applied to the run's
mask planes with the rules the run used (the network's rules, or the classical fallback
when no weights were found), so it shows exactly the routing of that run. Planes outside
the run are 0. For a stack the layer is lazy: a plane is routed when napari shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_rnon._layers import META_KEY
from napari_rnon._planes import Geometry, MaskPlanes, PlaneIndex

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels

__all__ = ["METHOD_COLORS", "METHOD_NAMES", "AutoRun", "method_label_data", "show_method_labels"]

#: Label code -> what the user reads (the codes of ``routing.LABEL_NAMES``).
METHOD_NAMES = {0: "not repaired", 1: "telea", 2: "navier-stokes", 3: "biharmonic", 4: "network"}
#: Label code -> RGBA: cool colours for the classical methods, orange for the network.
METHOD_COLORS = {
    0: (0.0, 0.0, 0.0, 0.0),
    1: (0.3, 0.75, 1.0, 1.0),
    2: (0.2, 0.4, 1.0, 1.0),
    3: (0.2, 0.9, 0.4, 1.0),
    4: (1.0, 0.55, 0.0, 1.0),
}


@dataclass(frozen=True)
class AutoRun:
    """What the label image of one finished ``auto`` run needs.

    Attributes:
        source: The repaired image layer (the label layer takes its scale and translate).
        mask: The run's mask planes.
        geometry: The image's axes.
        planes: The repaired planes.
        rules: Damage kind -> method, as the run used them (its provenance).
    """

    source: Image
    mask: MaskPlanes
    geometry: Geometry
    planes: tuple[PlaneIndex, ...]
    rules: dict[str, str]

    @property
    def layer_name(self) -> str:
        """The name of the run's label layer."""
        return f"{self.source.name} methods (auto)"


def _plane_labels(run: AutoRun, idx: PlaneIndex) -> np.ndarray:
    from rnon_engine.inference.routing import method_labels

    if idx not in run.planes:
        return np.zeros(run.geometry.yx, dtype=np.uint8)
    return method_labels(run.mask.plane(idx), run.rules)


def method_label_data(run: AutoRun) -> Any:
    """The label image of ``run``: the image's spatial shape, 0 where nothing was repaired.

    A single plane gives a numpy array; a stack gives a lazy dask array (one chunk per
    plane, routed when read).
    """
    geometry = run.geometry
    if not geometry.leading_shape:
        return _plane_labels(run, ())
    import dask.array as da

    n_lead = len(geometry.leading_shape)
    chunks = (1,) * n_lead + geometry.yx

    def block(x: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        if not block_info:  # dask probing the block's type
            return x
        loc = tuple(int(i) for i in block_info[0]["chunk-location"][:n_lead])
        return _plane_labels(run, loc).reshape(x.shape)

    zeros = da.zeros(geometry.spatial_shape, dtype=np.uint8, chunks=chunks)
    return da.map_blocks(block, zeros, dtype=np.uint8)


def show_method_labels(viewer: napari.Viewer, run: AutoRun) -> Labels:
    """Add (or update) the Labels layer of ``run`` and show it; hovering names the method."""
    import pandas as pd
    from napari.layers import Labels
    from napari.utils.colormaps import DirectLabelColormap

    data = method_label_data(run)
    features = pd.DataFrame({"index": list(METHOD_NAMES), "method": list(METHOD_NAMES.values())})
    meta = {META_KEY: {"methods_of": run.source.name, "labels": dict(METHOD_NAMES)}}
    name = run.layer_name
    if name in viewer.layers and isinstance(viewer.layers[name], Labels):
        layer = viewer.layers[name]
        layer.data = data
        layer.metadata = {**layer.metadata, **meta}
        layer.visible = True
        return layer
    colors: dict[Any, Any] = {k: np.array(c) for k, c in METHOD_COLORS.items()}
    colors[None] = np.zeros(4)
    return viewer.add_labels(
        data,
        name=name,
        scale=tuple(run.source.scale),
        translate=tuple(run.source.translate),
        opacity=0.7,
        colormap=DirectLabelColormap(color_dict=colors),
        features=features,
        metadata=meta,
    )
