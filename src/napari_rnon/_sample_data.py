"""Sample data for File > Open Sample > RNON Inpainting (each comes with its repair mask)."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_rnon._layers import MASK_COLOR, MASK_FOR_KEY

LayerDataTuple = tuple[Any, dict[str, Any], str]


def _mask_kwargs(name: str, image_name: str) -> dict[str, Any]:
    from napari.utils.colormaps import DirectLabelColormap

    return {
        "name": name,
        "opacity": 0.7,
        "metadata": {MASK_FOR_KEY: image_name},
        "colormap": DirectLabelColormap(
            color_dict={None: MASK_COLOR, 0: np.zeros(4), 1: MASK_COLOR}
        ),
    }


def damaged_photo() -> list[LayerDataTuple]:
    """An RGB photograph with white scratches and dust spots, and the mask of the damage."""
    from rnon_engine.samples import damaged_photo as make

    image, mask = make()
    # The engine's sample is the intact photograph and the damage mask; show the damage.
    image = image.copy()
    image[mask != 0] = 255
    name = "damaged photo"
    return [
        (image, {"name": name, "rgb": image.ndim == 3 and image.shape[-1] in (3, 4)}, "image"),
        ((mask != 0).astype(np.uint8), _mask_kwargs(f"{name} repair mask", name), "labels"),
    ]


def dead_pixel_stack() -> list[LayerDataTuple]:
    """A 16-bit, microscopy-like 3-D stack with dead pixels, and the dead-pixel mask."""
    from rnon_engine.samples import dead_pixel_stack as make

    image, mask = make()
    name = "dead-pixel stack"
    lo, hi = np.percentile(image, [0.5, 99.5])
    return [
        (
            image,
            {"name": name, "colormap": "gray", "contrast_limits": (float(lo), float(hi))},
            "image",
        ),
        ((mask != 0).astype(np.uint8), _mask_kwargs(f"{name} repair mask", name), "labels"),
    ]
