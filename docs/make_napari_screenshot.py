"""Regenerate docs/images/napari_screenshot.png (run by hand, under Xvfb on Linux).

    xvfb-run -a -s "-screen 0 1400x900x24" python docs/make_napari_screenshot.py

Opens the damaged-photo sample, repairs it with the packaged model (RNON repair +
optimise) through the Inpaint widget, and saves a screenshot of the whole window with the
widget docked and its mask tools open.
"""

from __future__ import annotations

import sys
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_rnon._widget import InpaintWidget

OUT = Path(__file__).resolve().parent / "images" / "napari_screenshot.png"


def main() -> int:
    """Make the screenshot; returns the exit status."""
    viewer = napari.Viewer()
    viewer.window.resize(1400, 900)
    viewer.open_sample("napari-rnon", "damaged_photo")
    widget = InpaintWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Inpaint (RNON Inpainting)")
    widget._image.value = viewer.layers["damaged photo"]
    widget._outline.value = True
    widget.mask_tools._toggle.value = True
    worker = widget.run("repair")
    if worker is None:
        print(widget._status.value, file=sys.stderr)
        return 1
    while widget._worker is not None:
        QApplication.processEvents()
    viewer.layers.selection.active = viewer.layers["damaged photo repair mask"]
    for _ in range(20):
        QApplication.processEvents()
    viewer.screenshot(str(OUT), canvas_only=False)
    print(f"wrote {OUT.name}: {widget._status.value}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
