"""The Inpaint widget's "Whole stack (rnon-batch)" section.

Save the painted mask into the image's OME-Zarr as ``labels/repair`` and show, with a Copy
button, the ``rnon-batch`` command that repairs the whole stack with the widget's model
and settings (see docs/batch.md, "Workflow: napari → rnon-batch"). The section knows the
Inpaint widget only through three callables (the chosen image, the chosen mask, the
engine settings) and is told to refresh when they change: it reads no control of the
widget.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, Container, Label, LineEdit, PushButton

from napari_rnon._ome_io import (
    OME_KEY,
    REPAIR_LABEL,
    OmeImage,
    layer_ome_image,
    save_repair_label,
)
from napari_rnon._planes import UserError
from napari_rnon._settings import EngineSettings

if TYPE_CHECKING:
    from napari.layers import Image, Labels

__all__ = ["BatchSection", "ask_replace_label", "qt_copy"]


def ask_replace_label(parent: Any, path: Path) -> bool:
    """Ask (Qt message box) whether to replace an existing ``labels/repair``."""
    from qtpy.QtWidgets import QMessageBox

    answer = QMessageBox.question(
        parent,
        "Replace the repair mask?",
        f"{path} already holds a repair mask.\n\nReplace it with the current mask? "
        "The image data is not changed either way.",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


def qt_copy(text: str) -> None:
    """Put ``text`` on the system clipboard (Qt)."""
    from qtpy.QtWidgets import QApplication

    QApplication.clipboard().setText(text)


class BatchSection(Container):
    """Save the mask into the OME-Zarr; show and copy the rnon-batch command.

    The section is collapsed (only its title check box shows) unless the chosen image was
    read from OME-Zarr; the user can open or close it at any time.

    Args:
        image: Returns the image layer chosen in the Inpaint widget (or None).
        mask: Returns the mask layer chosen there (or None).
        settings: Returns the engine settings of a "Repair" run.
        report: Shows a message in the Inpaint widget's status line.
        estimate: Returns whether "Estimate error" is ticked (adds ``--estimate-error``).

    Attributes:
        confirm: ``confirm(path) -> bool``, asked before replacing an existing
            ``labels/repair`` (a Qt question box; tests replace it).
        clipboard: ``clipboard(text)``, used by Copy (the Qt clipboard by default).
    """

    def __init__(
        self,
        image: Callable[[], Image | None],
        mask: Callable[[], Labels | None],
        settings: Callable[[], EngineSettings],
        report: Callable[[str], None] = lambda text: None,
        estimate: Callable[[], bool] = lambda: False,
    ) -> None:
        self._get_image, self._get_mask, self._get_settings = image, mask, settings
        self._get_estimate = estimate
        self._report = report
        self._last_image: Any = None
        self.confirm: Callable[[Path], bool] = lambda path: ask_replace_label(self.native, path)
        self.clipboard: Callable[[str], None] = qt_copy
        self._toggle = CheckBox(
            text="Whole stack (rnon-batch)",
            value=False,
            tooltip="Save the mask into the image's OME-Zarr and get the rnon-batch command "
            "that repairs every plane",
        )
        self._save_btn = PushButton(
            text="Save mask to OME-Zarr",
            tooltip="Write the mask into the image's OME-Zarr as labels/repair, where "
            "rnon-batch finds it (only labels/ is written; the image data never)",
        )
        self._command = LineEdit(value="", tooltip="The command that repairs the whole stack")
        self._command.native.setReadOnly(True)
        self._copy_btn = PushButton(text="Copy", tooltip="Copy the command to the clipboard")
        row = Container(layout="horizontal", labels=False, widgets=[self._command, self._copy_btn])
        self._info = Label(value="")
        self._info.native.setWordWrap(True)
        self._body = Container(
            widgets=[self._save_btn, row, self._info], labels=False, visible=False
        )
        super().__init__(widgets=[self._toggle, self._body], labels=False)
        self._toggle.changed.connect(self._on_toggle)
        self._save_btn.clicked.connect(self.save_mask)
        self._copy_btn.clicked.connect(self.copy_command)
        self.refresh()

    @property
    def expanded(self) -> bool:
        """Whether the section's body is open."""
        return bool(self._toggle.value)

    def _on_toggle(self, value: bool) -> None:
        self._body.visible = bool(value)

    # ------------------------------------------------------------------ state
    def ome_image(self) -> OmeImage | None:
        """The OME-Zarr image the chosen image layer was read from, if any."""
        return layer_ome_image(self._get_image())

    def _mask_is_saved(self, info: OmeImage) -> bool:
        mask = self._get_mask()
        ome = (getattr(mask, "metadata", {}) or {}).get(OME_KEY) if mask is not None else None
        return (
            isinstance(ome, dict)
            and ome.get("label") == REPAIR_LABEL
            and Path(str(ome.get("path"))) == info.path
            and info.has_repair_label
        )

    def command(self) -> list[str]:
        """The rnon-batch argument list for the current image, mask, model and settings."""
        from rnon_engine.batch.command import batch_command

        info = self.ome_image()
        s = self._get_settings()
        options = {
            "model": s.name_or_path,
            "stage2": s.stage2,
            "stages": s.stages,
            "device": s.device,
            "tile": s.tile_size,
            "estimate_error": bool(self._get_estimate()),
        }
        if info is not None:
            return batch_command(info.path, **options)
        image = self._get_image()
        source = getattr(getattr(image, "source", None), "path", None) if image else None
        return batch_command(source, mask="MASK", **options)

    def command_text(self) -> str:
        """:meth:`command` as one shell-quoted line."""
        return shlex.join(self.command())

    def refresh(self, *_: Any) -> None:
        """Update the command line and the note under it (call when a choice changed).

        When the chosen image changes, the section opens for an image read from
        OME-Zarr and closes for any other.
        """
        try:
            image = self._get_image()
            info = self.ome_image()
            if image is not self._last_image:
                self._last_image = image
                self._toggle.value = info is not None
            self._command.value = self.command_text()
            self._info.value = self._note(image, info)
            self._save_btn.enabled = info is not None and self._get_mask() is not None
        except RuntimeError:  # the Qt widgets are already gone (viewer closing)
            return

    def _note(self, image: Image | None, info: OmeImage | None) -> str:
        if image is None:
            return "Choose the image to repair."
        if info is None:
            return (
                f"'{image.name}' was not opened from an OME-Zarr image. To run the whole "
                "stack with rnon-batch, save the stack as OME-Zarr and open it in napari, "
                "or give rnon-batch a mask file (--mask) or --mask-value."
            )
        if not info.has_repair_label:
            return (
                f"Paint the mask, then click 'Save mask to OME-Zarr': rnon-batch reads it "
                f"from {info.label_path}."
            )
        from rnon_engine.batch.paths import default_output

        out = default_output(info.path)
        if self._mask_is_saved(info):
            return (
                f"rnon-batch uses the mask saved in {info.label_path} (after painting more, "
                f"save again and run the same command); writes {out}."
            )
        return (
            f"rnon-batch uses the mask saved in {info.label_path}: click 'Save mask to "
            f"OME-Zarr' to save the current mask there first. Writes {out}."
        )

    # ---------------------------------------------------------------- actions
    def _refuse(self, text: str, *, error: bool = False) -> None:
        from napari.utils.notifications import show_error, show_warning

        (show_error if error else show_warning)(text)
        self._report(text)

    def save_mask(self) -> Path | None:
        """Save the chosen mask as ``labels/repair`` of the image's OME-Zarr.

        Asks :attr:`confirm` before replacing an existing one. Returns the label path, or
        None when nothing was saved (a notification and the status line say why).
        """
        from napari.utils.notifications import show_info

        from napari_rnon._layers import layer_data, layer_geometry
        from napari_rnon._planes import check_mask_shape

        image, mask = self._get_image(), self._get_mask()
        if image is None or mask is None:
            self._refuse("Choose the image and its mask (Labels layer) first.")
            return None
        info = self.ome_image()
        if info is None:
            self._refuse(
                f"'{image.name}' was not opened from an OME-Zarr image, so there is no "
                "OME-Zarr to save the mask into. Open the stack from OME-Zarr in napari."
            )
            return None
        try:
            check_mask_shape(tuple(layer_data(mask).shape), layer_geometry(image))
        except UserError as exc:
            self._refuse(str(exc), error=True)
            return None
        if info.has_repair_label and not self.confirm(info.label_path):
            text = f"Not saved: {info.label_path} was kept as it was."
            show_info(text)
            self._report(text)
            return None
        try:
            path = save_repair_label(
                info.path, np.asarray(layer_data(mask)), replace=True, image=info
            )
        except UserError as exc:
            self._refuse(str(exc), error=True)
            return None
        mask.metadata = {
            **mask.metadata,
            OME_KEY: {"path": str(info.path), "label": REPAIR_LABEL},
        }
        text = f"Saved the repair mask to {path}. Run: {self.command_text()}"
        show_info(text)
        self._report(text)
        self.refresh()
        return path

    def copy_command(self) -> str:
        """Copy the command line to the clipboard and return it."""
        text = self.command_text()
        self.clipboard(text)
        return text
