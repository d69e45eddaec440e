"""The "Inpaint" dock widget: choose an image and a mask, repair, optimise, compare.

The widget is a thin shell over :class:`rnon_engine.inference.Inpainter`: it checks the
user's choices on the GUI thread (a problem shows in its status line and as a
notification, and starts nothing), runs the engine plane by plane in a napari worker
thread (progress with planes and time left in the widget and in napari's activity dock,
Cancel in both; see :mod:`napari_rnon._worker`), and writes the result on the GUI thread
once the run is complete into an Image layer named by what made it,
``"<name> repaired (<method>)"``: re-running the same settings updates that layer, other
settings make another, so methods can be compared. The result is shown on top, the mask
stays the selected layer, and "Before / after" (Shift+B) flips between the source and the
result. The channel layers of a multichannel image are repaired together with one mask.
A cancelled or failed run changes no layer. Method *Auto* (the default, as in
``rnon-batch``) sends each hole to its best method; after it the status line says how many
pixels each method filled, and "Show which method filled each pixel" adds their label
layer. "Estimate error" adds the expected error of the repair to the status line and the
result's metadata. torch and the engine are imported when a run
starts (the widget opens at once: the devices torch can use are listed by a background
thread), never when napari reads the manifest.

This file is one dock widget with some twenty controls and their links (about 650
lines); what has its own rules lives apart: the run (:mod:`napari_rnon._job`), methods,
weights and devices (:mod:`napari_rnon._methods`), the mask tools
(:mod:`napari_rnon._mask_section`), the whole-stack section
(:mod:`napari_rnon._batch_section`), a run's counts and error estimate
(:mod:`napari_rnon._run_record`) and Auto's label layer (:mod:`napari_rnon._method_labels`).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import QTimer

from napari_rnon._batch_section import BatchSection
from napari_rnon._job import Job, apply_job, duration, prepare_job, run_job
from napari_rnon._layers import (
    MASK_FOR_KEY,
    META_KEY,
    add_mask_layer,
    channel_layers,
    current_plane,
    layer_geometry,
    place_on_top,
)
from napari_rnon._mask_section import MaskTools
from napari_rnon._method_labels import AutoRun, show_method_labels
from napari_rnon._methods import (
    AUTO,
    AUTO_METHOD,
    METHODS,
    PACKAGED,
    RNON_METHODS,
    available_devices,
    describe_stage2,
    load_inpainter,
    result_tag,
    user_weights,
)
from napari_rnon._planes import (
    PlaneIndex,
    RunResult,
    UserError,
)
from napari_rnon._preload import EnginePreloader, build_prepared
from napari_rnon._run_record import summary_text
from napari_rnon._settings import EngineSettings
from napari_rnon._worker import WorkerMixin, progress_relay

if TYPE_CHECKING:
    import napari
    from napari.qt.threading import FunctionWorker

__all__ = [
    "ALL_PLANES",
    "AUTO_METHOD",
    "COMPARE_KEY",
    "CURRENT_PLANE",
    "METHODS",
    "RNON_METHODS",
    "EngineSettings",
    "InpaintWidget",
    "available_devices",
    "load_inpainter",
    "register_weights",
    "result_tag",
]

logger = logging.getLogger(__name__)

CURRENT_PLANE = "current plane"
ALL_PLANES = "all planes"
BROWSE = "\0browse"
#: The viewer key binding of "Before / after".
COMPARE_KEY = "Shift-B"
#: The engine of the widget's settings is built this long after they last changed.
PRELOAD_DELAY_MS = 300

# Open Inpaint widgets, so the Fine-tune widget can offer them its new weights.
_OPEN_WIDGETS: weakref.WeakSet[InpaintWidget] = weakref.WeakSet()


def register_weights(path: str | Path) -> None:
    """List ``path`` (fine-tuned weights) in every open Inpaint widget and select it there."""
    for widget in list(_OPEN_WIDGETS):
        try:
            widget.refresh_weights(select=path)
        except RuntimeError:  # its Qt widget is gone
            _OPEN_WIDGETS.discard(widget)


class InpaintWidget(WorkerMixin, Container):
    """Dock widget that repairs the masked pixels of an image layer.

    Args:
        viewer: The napari viewer (injected by napari when the widget is opened).
    """

    _what = "Inpainting"
    _busy_message = "A run is already going on; wait for it or click Cancel."
    _cancelled_message = "Inpainting cancelled; no layer was changed."

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._init_worker(int, int, on_progress=self._on_progress)
        self._viewer = viewer
        self.inpainter_factory = load_inpainter
        self._inpainter: Any = None
        self._inpainter_key: tuple[Any, ...] | None = None
        # The engine of the current settings is built ahead of the first Repair, a moment
        # after the settings last changed (see _preload.py).
        self.preloader = EnginePreloader()
        self._preload_timer = QTimer()
        self._preload_timer.setSingleShot(True)
        self._preload_timer.setInterval(PRELOAD_DELAY_MS)
        self._preload_timer.timeout.connect(self._preload)
        self._job: Job | None = None
        self._t0 = 0.0
        self._extra_weights: list[str] = []
        self._weights_value: str = PACKAGED
        self._compare: list[weakref.ref[Image]] = []
        self._last_auto: AutoRun | None = None

        self._image = ComboBox(
            label="Image", choices=self._image_choices, nullable=True, tooltip="Image to repair"
        )
        self._channels = CheckBox(
            text="All channels (one mask)",
            value=True,
            visible=False,
            tooltip="Repair every channel layer of this multichannel image with the same mask",
        )
        self._mask = ComboBox(
            label="Mask",
            choices=self._mask_choices,
            nullable=True,
            tooltip="Labels layer: every painted (nonzero) pixel is repaired",
        )
        self._new_mask = PushButton(
            text="New mask", tooltip="Add an empty mask for the image and start painting"
        )
        self.mask_tools = MaskTools(
            image=lambda: self._image.value,
            mask=lambda: self._mask.value,
            planes=self._run_planes_of,
            report=self._say,
        )
        self._method = ComboBox(
            label="Method",
            choices=list(METHODS),
            value=AUTO_METHOD,
            tooltip="Auto sends each hole to the method measured best for its kind (dead "
            "pixels and clusters of a few: biharmonic; dust, scratches, spots and larger "
            "holes: the packaged RNON network)",
        )
        self._weights = ComboBox(
            label="Weights",
            choices=self._weights_choices,
            value=PACKAGED,
            tooltip="RNON weights: the packaged model, your fine-tuned models (the "
            "Fine-tune widget saves them), or a .safetensors file",
        )
        self._stage2_info = Label(value="")
        self._stage2_info.native.setWordWrap(True)
        # torch takes seconds to import: the widget opens with these two and a background
        # thread adds the GPUs torch finds (see _start_device_probe).
        self._devices: list[str] = ["auto", "cpu"]
        self._device = ComboBox(label="Device", choices=self._device_choices, value="auto")
        self._planes = ComboBox(
            label="Planes",
            choices=[CURRENT_PLANE, ALL_PLANES],
            value=CURRENT_PLANE,
            tooltip="For stacks: repair the plane on screen, or every plane",
        )
        self._neighbours = CheckBox(
            text="Use neighbouring planes",
            value=False,
            tooltip="For stacks: fill the holes that the planes just before and after know "
            "(same position, along the first axis; distance-weighted, with a smooth "
            "intensity correction to the plane's border) and repair the rest with the "
            "method. For transient defects in time-lapses and damaged sections of volumes.",
        )
        self._context_planes = SpinBox(
            label="Planes each side",
            value=2,
            min=1,
            max=16,
            tooltip="How many planes on each side may be used",
        )
        self._outline = CheckBox(text="Outline repaired pixels", value=False)
        self._estimate = CheckBox(
            text="Estimate error",
            value=False,
            tooltip="After the run, estimate the root-mean-square error of the repaired "
            "pixels (in image values): known pixels near the holes are hidden in the holes' "
            "shapes and repaired the same way. Costs about two more repairs per plane.",
        )
        self._show_methods = CheckBox(
            text="Show which method filled each pixel",
            value=False,
            tooltip="Add a Labels layer of the last Auto run: which method (telea, "
            "navier-stokes, biharmonic, network) filled each repaired pixel",
        )
        self._show_advanced = CheckBox(text="Advanced settings", value=False)
        self._tile_size = SpinBox(
            label="Tile size",
            min=64,
            max=4096,
            step=64,
            value=512,
            tooltip="Side of the tiles the image is processed in (smaller: less memory)",
        )
        self._stage2 = FileEdit(
            label="Stage-2 weights",
            mode="r",
            filter="*.safetensors",
            nullable=True,
            tooltip="Optional separate weights for the optimise stage",
        )
        self._advanced = Container(widgets=[self._tile_size, self._stage2], visible=False)
        self._repair_btn = PushButton(text="Repair", tooltip="Fill the masked pixels")
        self._optimise_btn = PushButton(
            text="Optimise",
            tooltip="Run the RNON optimisation stage (stage 2) on the 'RNON repair only' "
            "result, or on the result layer chosen as Image",
        )
        self._cancel_btn = PushButton(text="Cancel", enabled=False)
        buttons = Container(
            layout="horizontal",
            labels=False,
            widgets=[self._repair_btn, self._optimise_btn, self._cancel_btn],
        )
        self._bar = ProgressBar(label="Progress", min=0, max=1000, value=0)
        self._status = Label(value="")
        self._status.native.setWordWrap(True)
        self._compare_btn = PushButton(
            text="Before / after (Shift+B)",
            tooltip="Flip between the source and the last result",
        )
        self.batch = BatchSection(
            image=lambda: self._image.value,
            mask=lambda: self._mask.value,
            settings=lambda: self.settings("repair"),
            report=self._say,
            estimate=lambda: bool(self._estimate.value),
        )
        super().__init__(
            widgets=[
                self._image,
                self._channels,
                self._mask,
                self._new_mask,
                self.mask_tools,
                self._method,
                self._weights,
                self._stage2_info,
                self._device,
                self._planes,
                self._neighbours,
                self._context_planes,
                self._outline,
                self._estimate,
                self._show_methods,
                self._show_advanced,
                self._advanced,
                buttons,
                self._bar,
                self._status,
                self._compare_btn,
                self.batch,
            ],
        )
        self._image.changed.connect(self._on_image_changed)
        self._neighbours.changed.connect(
            lambda v: setattr(
                self._context_planes, "visible", bool(v) and not self._neighbours.native.isHidden()
            )
        )
        self._mask.changed.connect(self.mask_tools.attach)
        self._method.changed.connect(self._on_method_changed)
        self._weights.changed.connect(self._on_weights_changed)
        self._stage2.changed.connect(lambda _: self._update_stage2_info())
        self._show_advanced.changed.connect(lambda v: setattr(self._advanced, "visible", v))
        self._show_methods.changed.connect(self._on_show_methods)
        self._new_mask.clicked.connect(self.new_mask)
        self._repair_btn.clicked.connect(lambda: self.run("repair"))
        self._optimise_btn.clicked.connect(lambda: self.run("optimise"))
        self._cancel_btn.clicked.connect(self.cancel)
        self._compare_btn.clicked.connect(self.toggle_before_after)
        for control in (
            self._image,
            self._mask,
            self._method,
            self._weights,
            self._device,
            self._tile_size,
            self._stage2,
            self._estimate,
        ):
            control.changed.connect(self.batch.refresh)
        for control in (self._method, self._weights, self._device, self._tile_size, self._stage2):
            control.changed.connect(lambda _: self._preload_timer.start())
        viewer.bind_key(COMPARE_KEY, self._on_compare_key, overwrite=True)
        self._start_device_probe()
        self._preload_timer.start()

        events = viewer.layers.events
        events.inserted.connect(self._on_layers_changed)
        events.removed.connect(self._on_layers_changed)
        events.moved.connect(self._on_layers_changed)
        events.removed.connect(self._on_layer_removed)
        for layer in viewer.layers:
            layer.events.name.connect(self._on_layers_changed)
        self._pick_defaults()
        self._on_method_changed(self._method.value)
        self._on_image_changed(self._image.value)
        self.mask_tools.attach(self._mask.value)
        _OPEN_WIDGETS.add(self)

    # ----------------------------------------------------------------- choices
    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(ly.name, ly) for ly in self._viewer.layers if isinstance(ly, Image)]

    def _mask_choices(self, _widget: Any = None) -> list[tuple[str, Labels]]:
        return [(ly.name, ly) for ly in self._viewer.layers if isinstance(ly, Labels)]

    def _weights_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        choices = [("packaged model", PACKAGED), *user_weights()]
        known = {v for _, v in choices}
        choices += [(Path(p).name, p) for p in self._extra_weights if p not in known]
        return [*choices, ("choose a file...", BROWSE)]

    def _device_choices(self, _widget: Any = None) -> list[str]:
        return list(self._devices)

    def _start_device_probe(self) -> None:
        """List torch's devices in a background thread; the GUI thread gets the list."""
        self.devices_ready = threading.Event()
        self._device_relay = progress_relay(object)
        self._device_relay.progress.connect(self._on_devices)

        def probe() -> None:
            try:
                devices = available_devices()
            except Exception as exc:  # no torch, a broken driver: keep auto and cpu
                logger.warning("RNON: could not list the torch devices: %s", exc)
                devices = ["auto", "cpu"]
            self._device_relay.progress.emit(devices)

        threading.Thread(target=probe, name="rnon-device-probe", daemon=True).start()

    def _on_devices(self, devices: list[str]) -> None:
        self._devices = list(devices)
        try:
            current = self._device.value
            self._device.reset_choices()
            if current in self._devices:
                self._device.value = current
        except RuntimeError:  # the widget is gone
            pass
        self.devices_ready.set()

    def _on_layers_changed(self, event: Any = None) -> None:
        inserted = None
        if event is not None and getattr(event, "type", "") == "inserted":
            inserted = event.value
            inserted.events.name.connect(self._on_layers_changed)
        try:
            self.reset_choices()
            self._pick_defaults(inserted=inserted)
            self._update_channels()
        except RuntimeError:  # the Qt widget is already gone (viewer closing)
            return

    def _pick_defaults(self, inserted: Any = None) -> None:
        """Pre-select sensible layers: the active image, and a mask made for it."""
        active = self._viewer.layers.selection.active
        if self._image.value is None:
            if isinstance(active, Image) and META_KEY not in active.metadata:
                self._image.value = active
            elif isinstance(inserted, Image) and META_KEY not in inserted.metadata:
                self._image.value = inserted
            else:
                images = [c for _, c in self._image_choices() if META_KEY not in c.metadata]
                if images:
                    self._image.value = images[0]
        self._pick_mask(prefer=inserted)

    def _pick_mask(self, prefer: Any = None) -> None:
        image = self._image.value
        if image is None:
            return
        masks = [c for _, c in self._mask_choices()]
        names = {ly.name for ly in self._channel_group(image)}
        made_for = [m for m in masks if m.metadata.get(MASK_FOR_KEY) in names]
        if isinstance(prefer, Labels) and prefer in made_for:
            self._mask.value = prefer
        elif self._mask.value is None and made_for:
            self._mask.value = made_for[-1]
        elif self._mask.value is None and len(masks) == 1:
            self._mask.value = masks[0]

    def _channel_group(self, image: Image) -> list[Image]:
        try:
            return channel_layers(self._viewer, image)
        except Exception:  # an odd layer never blocks the widget
            return [image]

    def _update_channels(self) -> None:
        image = self._image.value
        group = self._channel_group(image) if image is not None else []
        self._channels.visible = len(group) > 1
        if len(group) > 1:
            self._channels.text = f"All {len(group)} channels (one mask)"

    def _on_image_changed(self, image: Image | None) -> None:
        stack = False
        if image is not None:
            try:
                stack = bool(layer_geometry(image).leading_shape)
            except UserError:
                stack = False
            current = self._mask.value
            names = {ly.name for ly in self._channel_group(image)}
            if current is None or current.metadata.get(MASK_FOR_KEY) not in (None, *names):
                self._mask.value = None
            self._pick_mask()
        self._planes.visible = stack
        self._neighbours.visible = stack
        self._context_planes.visible = stack and bool(self._neighbours.value)
        self._update_channels()

    def _on_weights_changed(self, value: str | None) -> None:
        if value == BROWSE:
            from qtpy.QtWidgets import QFileDialog

            path, _ = QFileDialog.getOpenFileName(
                self.native, "RNON weights", "", "Weights (*.safetensors)"
            )
            if path:
                self.set_weights(path)
            else:
                self._weights.value = self._weights_value
            return
        if value is not None:
            self._weights_value = value
        self._update_stage2_info()

    def set_weights(self, path: str | Path) -> None:
        """Choose ``path`` (a ``.safetensors`` file) or ``"default"`` as the RNON weights."""
        value = str(path)
        if value != PACKAGED and value not in {v for _, v in self._weights_choices()}:
            self._extra_weights.append(value)
            self._weights.reset_choices()
        self._weights.value = value

    def refresh_weights(self, select: str | Path | None = None) -> None:
        """Re-read the user weights folder; with ``select``, choose that file as Weights."""
        self._weights.reset_choices()
        if select is None:
            return
        self.set_weights(select)
        if self._method.value not in RNON_METHODS:
            self._method.value = RNON_METHODS[1]

    def _on_method_changed(self, label: str) -> None:
        rnon = label in RNON_METHODS
        self._weights.enabled = rnon
        self._stage2.enabled = rnon
        self._optimise_btn.enabled = rnon and self._worker is None
        self._show_methods.visible = label == AUTO_METHOD or self._show_methods.value
        self._update_stage2_info()

    def _update_stage2_info(self) -> None:
        """Say which stage 2 "RNON (repair + optimise)" uses with the chosen weights."""
        if self._method.value != RNON_METHODS[0]:
            self._stage2_info.value = ""
            self._stage2_info.visible = False
            return
        self._stage2_info.visible = True
        self._stage2_info.value = self.stage2_description()

    def stage2_description(self) -> str:
        """Which stage-2 (optimise) weights a repair + optimise run uses, in words."""
        return describe_stage2(self.settings("repair"))

    # ---------------------------------------------------------------- helpers
    def _say(self, text: str) -> None:
        """Show ``text`` in the status line."""
        try:
            self._status.value = text
        except RuntimeError:  # widget already deleted
            pass

    def _run_planes_of(self, image: Image) -> list[PlaneIndex]:
        """The planes a run covers for ``image``: the one on screen, or all of them."""
        geometry = layer_geometry(image)
        if geometry.leading_shape and self._planes.value == ALL_PLANES:
            return geometry.all_planes()
        return [current_plane(self._viewer, image, geometry)]

    # ---------------------------------------------------------------- actions
    def new_mask(self) -> Labels | None:
        """Add an empty mask for the chosen image, select it and switch to the brush."""
        image = self._image.value
        if image is None:
            text = "Choose an image layer first, then click 'New mask'."
            show_warning(text)
            self._say(text)
            return None
        try:
            layer = add_mask_layer(self._viewer, image)
        except UserError as exc:
            show_error(str(exc))
            self._say(str(exc))
            return None
        self._mask.value = layer
        return layer

    def settings(self, step: str = "repair") -> EngineSettings:
        """The engine settings the widget's controls describe for ``step``."""
        name, stages = METHODS[self._method.value]
        weights = self._weights.value
        if name == PACKAGED and weights not in (None, PACKAGED, BROWSE):
            name = str(weights)
        stage2 = self._stage2.value
        stage2_path = str(stage2) if stage2 is not None and str(stage2) not in ("", ".") else None
        if step == "optimise":
            stages = "optimize"
        return EngineSettings(
            name_or_path=name,
            stage2=stage2_path if self._method.value in RNON_METHODS else None,
            device=str(self._device.value),
            tile_size=int(self._tile_size.value),
            stages=stages,
        )

    def _prepare(self, step: str) -> Job:
        """Check the user's choices and build a job; raises UserError with the reason."""
        chosen = self._image.value
        if chosen is None or chosen not in self._viewer.layers:
            raise UserError("Choose the image layer to repair (Image).")
        if step == "optimise" and self._method.value not in RNON_METHODS:
            raise UserError("Optimise is the second RNON stage: choose an RNON method.")
        mask_layer = self._mask.value
        if mask_layer is None or mask_layer not in self._viewer.layers:
            raise UserError(
                "No mask: click 'New mask' and paint the pixels to repair, "
                "or choose a Labels layer as Mask."
            )
        group = self._channel_group(chosen)
        if not (self._channels.value and len(group) > 1):
            group = [chosen]
        settings = self.settings(step)
        for path in (settings.name_or_path, settings.stage2):
            if path is not None and path not in {n for n, _ in METHODS.values()}:
                if not Path(path).is_file():
                    raise UserError(f"Weights file not found: {path}. Choose an existing file.")
        return prepare_job(
            self._viewer,
            step,
            group,
            mask_layer,
            settings,
            planes_of=self._run_planes_of,
            all_planes=self._planes.value == ALL_PLANES,
            outline=bool(self._outline.value),
            method_label=str(self._method.value),
            estimate=bool(self._estimate.value),
            # the option shows for stacks only; a single image ignores a left-over tick
            context_planes=int(self._context_planes.value)
            if self._neighbours.value and layer_geometry(chosen).leading_shape
            else 0,
        )

    def run(self, step: str = "repair") -> FunctionWorker | None:
        """Start a run (``"repair"`` or ``"optimise"``) in a worker thread.

        Returns:
            The started worker, or None when the choices are not valid (the status line
            and a notification say why) or a run is already going on.
        """
        job = self._prepare_run(self._prepare, step)
        if job is None:
            return None
        self._job = job
        self._bar.value = 0
        n = len(job.planes) * len(job.parts)
        self._say(f"{step.capitalize()}: starting ({n} plane(s))...")
        self._t0 = time.perf_counter()
        return self._start_worker(
            self._work, job, self._on_returned, progress_desc=f"RNON: {step} {job.source.name}"
        )

    def _preload(self) -> None:
        """Start building the engine of the current settings, unless it is built already."""
        try:
            settings = self.settings()
        except RuntimeError:  # the widget is gone
            return
        key = (self.inpainter_factory, settings.engine_key)
        if key != self._inpainter_key:
            factory = self.inpainter_factory
            self.preloader.start(key, lambda: build_prepared(factory, settings))

    # ---------------------------------------------------- worker (other thread)
    def _work(self, job: Job) -> list[RunResult]:
        key = (self.inpainter_factory, job.settings.engine_key)
        if self._inpainter_key != key:
            self._inpainter = None
            # Built ahead of the run when the settings have not changed since (waited for).
            built = self.preloader.take(key)
            self._inpainter = built if built is not None else self.inpainter_factory(job.settings)
            self._inpainter_key = key
        return run_job(job, self._inpainter, self._relay.progress.emit, self._cancelled)

    # --------------------------------------------------------- GUI-thread ends
    def _on_progress(self, done: int, total: int) -> None:
        """Progress bar, percent, plane and time left in the widget (GUI thread)."""
        job = self._job
        if job is None or total <= 0 or self._progress_is_stale():
            return
        frac = min(max(done / total, 0.0), 1.0)
        self._bar.value = int(1000 * frac)
        n = len(job.planes) * len(job.parts)
        plane = min(n, int(frac * n) + 1)
        elapsed = time.perf_counter() - self._t0
        text = f"{job.step.capitalize()}: {100 * frac:.0f}%, plane {plane} of {n}"
        if 0 < frac < 1 and elapsed > 0.5:
            text += f", about {duration(elapsed * (1 - frac) / frac)} left"
        self._say(text)
        self._update_pbar(done, total)  # last: it processes Qt events (the result may come)

    def _on_returned(self, results: list[RunResult]) -> None:
        try:
            self._apply(results)
        except Exception as exc:  # never let a bug take napari down: report it
            logger.error("RNON: writing the result failed", exc_info=exc)
            show_error(f"Writing the result failed ({type(exc).__name__}): {exc}")
            self._say(f"Writing the result failed: {exc}")

    def _apply(self, results: list[RunResult]) -> None:
        job = self._job
        if job is None:
            return
        for part in job.parts:
            for layer in (part.source, part.input_layer):
                if layer not in self._viewer.layers:
                    text = f"'{layer.name}' was removed during the run; nothing was written."
                    show_warning(text)
                    self._say(text)
                    return
        if not any(r.planes for r in results):
            text = (
                f"Nothing to repair: the mask '{job.mask_layer.name}' has no painted pixels "
                "in the planes of this run. Paint the pixels to repair, then run again."
            )
            show_warning(text)
            self._say(text)
            return
        layers = apply_job(self._viewer, job, results)
        self._compare = [weakref.ref(layer) for layer in layers]
        if job.mask_layer in self._viewer.layers:
            self._viewer.layers.selection.active = job.mask_layer
        elapsed = time.perf_counter() - self._t0
        self._bar.value = 1000
        n = len(results[0].planes)
        names = ", ".join(f"'{layer.name}'" for layer in layers)
        records = [summary_text(layer.metadata.get(META_KEY, {})) for layer in layers]
        if len(layers) > 1 and any(records):
            records = [f"'{ly.name}': {r}" for ly, r in zip(layers, records, strict=True) if r]
        extra = " ".join(f"{r[0].upper()}{r[1:]}." for r in records if r)
        self._say(
            f"{job.step.capitalize()}: {n} plane(s) in {elapsed:.1f} s -> {names}. "
            + (f"{extra} " if extra else "")
            + f"Before / after: {COMPARE_KEY.replace('-', '+')}."
        )
        rules = results[0].provenance.get("rules")
        if job.settings.name_or_path == AUTO and isinstance(rules, dict):
            self._last_auto = AutoRun(
                source=job.source,
                mask=job.mask,
                geometry=job.geometry,
                planes=tuple(results[0].planes),
                rules=dict(rules),
            )
            if self._show_methods.value:
                self.show_methods()

    def show_methods(self) -> Labels | None:
        """Show which method filled each pixel of the last Auto run, in a Labels layer.

        Returns:
            The layer ``"<image> methods (auto)"`` (added, or updated and shown), or None
            when there is no Auto run to show (the status line says so).
        """
        run = self._last_auto
        if run is None or run.source not in self._viewer.layers:
            self._say("No Auto run to show yet: choose Method 'Auto' and click Repair.")
            return None
        active = self._viewer.layers.selection.active
        layer = show_method_labels(self._viewer, run)
        place_on_top(self._viewer, [layer])
        if active is not None and active in self._viewer.layers:
            self._viewer.layers.selection.active = active
        return layer

    def _on_show_methods(self, show: bool) -> None:
        if show:
            self.show_methods()
            return
        run = self._last_auto
        if run is not None and run.layer_name in self._viewer.layers:
            self._viewer.layers[run.layer_name].visible = False
        self._show_methods.visible = self._method.value == AUTO_METHOD

    def toggle_before_after(self) -> bool | None:
        """Hide or show the last run's result layers, to compare them with the source.

        Returns:
            True when the result shows now, False when the source does, None when there
            is no result to compare yet (the status line says so).
        """
        layers = [
            layer
            for ref in self._compare
            if (layer := ref()) is not None and layer in self._viewer.layers
        ]
        if not layers:
            self._say("Nothing to compare yet: run Repair first.")
            return None
        show = not any(layer.visible for layer in layers)
        for layer in layers:
            layer.visible = show
        self._say(
            f"After: {', '.join(repr(ly.name) for ly in layers)}."
            if show
            else f"Before: {', '.join(repr(ly.metadata[META_KEY]['source']) for ly in layers)}."
        )
        return show

    def _on_compare_key(self, viewer: Any = None) -> None:
        self.toggle_before_after()

    def _on_errored(self, exc: BaseException) -> None:
        from rnon_engine.errors import Cancelled, RnonError

        super()._on_errored(exc)
        if isinstance(exc, RnonError) and not isinstance(exc, Cancelled):
            # A failed load must not leave a half-built engine in the cache.
            self._inpainter = None
            self._inpainter_key = None

    def _on_finished(self) -> None:
        self._job = None
        super()._on_finished()

    def _on_layer_removed(self, event: Any) -> None:
        job = self._job
        if job is None or self._worker is None:
            return
        for part in job.parts:
            if event.value is part.source or event.value is part.input_layer:
                self.cancel(
                    f"'{event.value.name}' was removed during the run; the run was stopped "
                    "and no layer was changed."
                )
                return

    def _set_running(self, running: bool) -> None:
        self._repair_btn.enabled = not running
        self._optimise_btn.enabled = not running and self._method.value in RNON_METHODS
        self._new_mask.enabled = not running
        self._cancel_btn.enabled = running
