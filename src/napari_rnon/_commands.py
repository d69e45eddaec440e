"""Commands contributed to napari's menus (Layers > Annotate)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import napari


def add_repair_mask(viewer: napari.viewer.Viewer) -> None:
    """Add an empty repair mask for the selected image layer, ready to paint.

    napari injects the viewer. The mask has the image's spatial shape (no colour axis),
    label 1 in magenta, and the paint brush selected. Returns None on purpose: napari
    would otherwise try to add the returned layer a second time.
    """
    from napari.layers import Image
    from napari.utils.notifications import show_warning

    from napari_rnon._layers import add_mask_layer

    active = viewer.layers.selection.active
    image = active if isinstance(active, Image) else None
    if image is None:
        selected = [ly for ly in viewer.layers.selection if isinstance(ly, Image)]
        image = selected[0] if selected else None
    if image is None:
        show_warning("Select an image layer first: the repair mask is made for it.")
        return
    add_mask_layer(viewer, image)
