"""The "Fine-tune" dock widget: adapt the repair model to the images open in napari.

Choose image layers (2-D, stacks, RGB, the channel layers of a multichannel image),
optionally a Labels layer of bad pixels to keep out of training (e.g. the repair mask), a
time budget and a name. Training runs :func:`rnon_engine.train.finetune.finetune` in a napari
worker thread (progress bar, live loss, Cancel; see :mod:`napari_rnon._worker`); the
weights are saved as ``<name>.safetensors`` in :func:`rnon_engine.train.finetune.user_weights_dir`,
and every open Inpaint widget lists and selects them. torch and the engine are imported
when the widget is created or run, never when napari reads the manifest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    Select,
)
from napari.layers import Image, Labels
from napari.utils.notifications import show_info

from napari_rnon._layers import META_KEY, layer_data
from napari_rnon._planes import UserError
from napari_rnon._worker import WorkerMixin

if TYPE_CHECKING:
    import napari
    from napari.qt.threading import FunctionWorker

logger = logging.getLogger(__name__)


class FinetuneWidget(WorkerMixin, Container):
    """Dock widget that fine-tunes the RNON repair generator on chosen image layers.

    Attributes:
        max_steps: Optional step limit on top of the time budget (tests, quick trials).
        overrides: Dotted-key changes to the fine-tune configuration (tests).
        init: Starting weights used when the "Start from" field is empty.
        last_weights: Path of the weights saved by the last finished run.
        confirm_overwrite: ``confirm_overwrite(path, free_name)``, asked when a model of
            the chosen name exists: ``"replace"``, ``"rename"`` (save as ``free_name``)
            or ``"cancel"`` (a Qt question box; tests replace it).

    Args:
        viewer: The napari viewer (injected by napari when the widget is opened).
    """

    _what = "Fine-tuning"
    _busy_message = "Fine-tuning is already running; wait for it or click Cancel."
    _cancelled_message = "Fine-tuning cancelled; no weights were saved."

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from rnon_engine.train.finetune import user_weights_dir

        # The relay carries (step, total, loss) from the training thread.
        self._init_worker(int, int, float, on_progress=self._on_progress)
        self._viewer = viewer
        self.max_steps: int | None = None
        self.overrides: dict[str, Any] = {}
        self.init: str = "default"
        self.device: str = "auto"
        self.last_weights: Path | None = None
        self.last_error: BaseException | None = None
        self._t0 = 0.0
        self.confirm_overwrite: Callable[[Path, str], str] = lambda path, free: ask_overwrite(
            self.native, path, free
        )

        self._images = Select(
            label="Images",
            choices=self._image_choices,
            allow_multiple=True,
            tooltip="Image layers to learn from (stacks: every plane; RGB as colour; "
            "multichannel: choose each channel layer)",
        )
        self._images.native.setMinimumHeight(80)
        self._exclude = ComboBox(
            label="Exclude",
            choices=self._labels_choices,
            nullable=True,
            value=None,
            tooltip="Optional Labels layer: painted (nonzero) pixels are bad and never used "
            "for training, e.g. the repair mask",
        )
        self._init = FileEdit(
            label="Start from",
            mode="r",
            filter="*.safetensors",
            nullable=True,
            tooltip="Repair weights to start from; empty = the packaged model",
        )
        self._minutes = FloatSpinBox(
            label="Minutes", min=0.1, max=600.0, step=0.5, value=5.0, tooltip="Time budget"
        )
        self._name = LineEdit(label="Name", value="my-model")
        self._where = Label(value=f"Saved to {user_weights_dir()}")
        self._where.native.setWordWrap(True)
        self._train_btn = PushButton(text="Train")
        self._cancel_btn = PushButton(text="Cancel", enabled=False)
        buttons = Container(
            layout="horizontal", labels=False, widgets=[self._train_btn, self._cancel_btn]
        )
        self._bar = ProgressBar(label="Progress", min=0, max=1000, value=0)
        self._status = Label(value="")
        self._status.native.setWordWrap(True)
        super().__init__(
            widgets=[
                self._images,
                self._exclude,
                self._init,
                self._minutes,
                self._name,
                self._where,
                buttons,
                self._bar,
                self._status,
            ]
        )
        self._train_btn.clicked.connect(self.run)
        self._cancel_btn.clicked.connect(self.cancel)
        events = viewer.layers.events
        for ev in (events.inserted, events.removed, events.moved):
            ev.connect(self._on_layers_changed)
        self._preselect()

    # ----------------------------------------------------------------- choices
    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(ly.name, ly) for ly in self._viewer.layers if isinstance(ly, Image)]

    def _labels_choices(self, _widget: Any = None) -> list[tuple[str, Labels]]:
        return [(ly.name, ly) for ly in self._viewer.layers if isinstance(ly, Labels)]

    def _on_layers_changed(self, event: Any = None) -> None:
        try:
            self.reset_choices()
        except RuntimeError:  # the Qt widget is gone (viewer closing)
            return

    def _preselect(self) -> None:
        active = self._viewer.layers.selection.active
        if isinstance(active, Image) and META_KEY not in active.metadata:
            self._images.value = [active]

    # ---------------------------------------------------------------- actions
    def _prepare(self) -> dict[str, Any]:
        """Check the choices on the GUI thread; raises UserError with the reason."""
        import numpy as np

        from rnon_engine.errors import InputError
        from rnon_engine.train.finetune import _NAME_RE, check_exclude, user_weights_dir

        layers = [ly for ly in (self._images.value or []) if ly in self._viewer.layers]
        if not layers:
            raise UserError("Choose at least one image layer to learn from (Images).")
        name = str(self._name.value).strip()
        if not _NAME_RE.match(name):
            raise UserError(
                f"Name {name!r} cannot be a file name: use letters, digits, '.', '_', '-'."
            )
        init = self._init.value
        init_text = str(init) if init is not None and str(init) not in ("", ".") else self.init
        if init_text != "default" and not Path(init_text).is_file():
            raise UserError(f"Weights file not found: {init_text}. Choose an existing file.")
        exclude_layer = self._exclude.value
        images, axes, masks = [], [], []
        matched = False
        for layer in layers:
            data = layer_data(layer)
            axis = -1 if layer.rgb else None
            mask = None
            if exclude_layer is not None and exclude_layer in self._viewer.layers:
                candidate = np.asarray(layer_data(exclude_layer))
                try:  # the mask applies to the chosen images whose shape it fits
                    check_exclude(data.shape, candidate, axis)
                    mask, matched = candidate, True
                except InputError:
                    mask = None
            images.append(data)
            axes.append(axis)
            masks.append(mask)
        if exclude_layer is not None and not matched:
            raise UserError(
                f"The exclude layer '{exclude_layer.name}' (shape "
                f"{tuple(layer_data(exclude_layer).shape)}) matches none of the chosen images; "
                "choose a Labels layer with an image's shape, or none."
            )
        target = user_weights_dir() / f"{name}.safetensors"
        overwrite = False
        if target.exists():
            free = free_name(target.parent, name)
            answer = self.confirm_overwrite(target, free)
            if answer == "replace":
                overwrite = True
            elif answer == "rename":
                name, target = free, target.parent / f"{free}.safetensors"
                self._name.value = free
            else:
                raise UserError(
                    f"Not started: a model named '{name}' exists ({target}). Choose another "
                    f"Name (e.g. '{free}'), or train again and answer 'Replace'."
                )
        return {
            "images": images,
            "channel_axis": axes,
            "exclude_masks": masks,
            "init": init_text,
            "name": name,
            "minutes": float(self._minutes.value),
            "layers": [ly.name for ly in layers],
            "overwrite": overwrite,
        }

    def run(self) -> FunctionWorker | None:
        """Start training in a worker thread; returns the worker, or None if refused.

        Cancel (:meth:`cancel`) stops training after the current step; nothing is saved.
        """
        job = self._prepare_run(self._prepare)
        if job is None:
            return None
        _preload()
        self.last_error = None
        self._bar.value = 0
        self._status.value = f"Preparing {len(job['images'])} image(s)..."
        self._t0 = time.perf_counter()
        return self._start_worker(self._work, job, self._on_returned)

    # ---------------------------------------------------- worker (other thread)
    def _work(self, job: dict[str, Any]) -> Path:
        from rnon_engine.train.finetune import finetune

        return finetune(
            job["images"],
            init=job["init"],
            name=job["name"],
            minutes=job["minutes"],
            max_steps=self.max_steps,
            exclude_masks=job["exclude_masks"],
            channel_axis=job["channel_axis"],
            overrides=self.overrides or None,
            device=self.device,
            progress=self._relay.progress.emit,
            cancel=self._cancelled,
            overwrite=job["overwrite"],
            deterministic=False,  # its import of triton crashed next to napari's OpenGL
        )

    # --------------------------------------------------------- GUI-thread ends
    def _on_progress(self, step: int, total: int, loss: float) -> None:
        if self._progress_is_stale():
            return
        elapsed = time.perf_counter() - self._t0
        budget = 60.0 * float(self._minutes.value)
        frac = max(step / max(total, 1), min(elapsed / budget, 1.0))
        self._bar.value = int(1000 * min(frac, 1.0))
        self._status.value = f"step {step}, loss {loss:.4f}, {elapsed:.0f} s"

    def _on_returned(self, path: Path) -> None:
        from napari_rnon._widget import register_weights

        self.last_weights = Path(path)
        self._bar.value = 1000
        self._status.value = f"Saved {path.name} ({time.perf_counter() - self._t0:.0f} s)"
        try:
            register_weights(path)
        except Exception as exc:  # never take napari down for a refresh
            logger.error("RNON: could not update the Inpaint widgets", exc_info=exc)
        show_info(f"Fine-tuned weights saved to {path}; the Inpaint widget now uses them.")

    def _on_errored(self, exc: BaseException) -> None:
        self.last_error = exc
        super()._on_errored(exc)

    def _set_running(self, running: bool) -> None:
        self._train_btn.enabled = not running
        self._cancel_btn.enabled = running


def _preload() -> None:
    """Import, on the GUI thread, what training needs, without loading triton.

    The losses import torchvision, whose ``ops`` import ``torch._dynamo``, which imports
    triton when it is installed (CUDA builds of torch on Linux). Loading triton's bundled
    LLVM into a process whose OpenGL driver (Mesa) already loaded its own LLVM crashed
    napari here (segmentation fault). While these modules are imported, ``import triton``
    is made to fail, so torch records triton as unavailable; the block is lifted after.
    Training here runs on the CPU, which never uses triton.
    """
    import sys

    blocked = "triton" not in sys.modules
    if blocked:
        sys.modules["triton"] = None  # type: ignore[assignment]
    try:
        import torch._dynamo  # noqa: F401
        import torch.utils.tensorboard  # noqa: F401
        import torchvision  # noqa: F401

        import rnon_engine.train.finetune  # noqa: F401
        import rnon_engine.train.losses  # noqa: F401
        import rnon_engine.train.trainer  # noqa: F401
    finally:
        if blocked and sys.modules.get("triton", 0) is None:
            del sys.modules["triton"]


def free_name(folder: Path, name: str) -> str:
    """``name`` if ``<folder>/<name>.safetensors`` is free, else ``name-2``, ``name-3``..."""
    if not (folder / f"{name}.safetensors").exists():
        return name
    i = 2
    while (folder / f"{name}-{i}.safetensors").exists():
        i += 1
    return f"{name}-{i}"


def ask_overwrite(parent: Any, path: Path, free: str) -> str:
    """Ask (Qt message box) what to do when a model of that name exists.

    Returns:
        ``"replace"``, ``"rename"`` (save under ``free``) or ``"cancel"``.
    """
    from qtpy.QtWidgets import QMessageBox

    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("Replace the model?")
    box.setText(f"A model named '{path.stem}' exists:\n{path}\n\nReplace it?")
    replace = box.addButton("Replace", QMessageBox.ButtonRole.DestructiveRole)
    rename = box.addButton(f"Save as '{free}'", QMessageBox.ButtonRole.AcceptRole)
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(rename)
    box.setEscapeButton(cancel)
    box.exec()
    clicked = box.clickedButton()
    if clicked is replace:
        return "replace"
    if clicked is rename:
        return "rename"
    return "cancel"
