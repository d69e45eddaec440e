"""The "Inpaint" dock widget: choose an image and a mask, repair, optimise.

The widget is a thin shell over :class:`rnon_engine.inference.Inpainter`: it checks the
user's choices on the GUI thread, runs the engine plane by plane in a napari worker thread
(progress in napari's activity dock, Cancel in the widget and in the dock; see
:mod:`napari_rnon._worker`), and writes the
result into a new Image layer ``"<name> repaired"`` on the GUI thread once the run is
complete. A cancelled or failed run changes no layer. torch and the engine are imported
when the widget is created or run, never when napari reads the manifest.
"""

from __future__ import annotations

import logging
import time
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, PushButton, SpinBox
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_warning

from napari_rnon._layers import (
    MASK_FOR_KEY,
    META_KEY,
    add_mask_layer,
    apply_result,
    current_plane,
    layer_data,
    layer_geometry,
    update_outline,
)
from napari_rnon._ome import BatchSection
from napari_rnon._planes import (
    MaskPlanes,
    PlaneIndex,
    RunResult,
    UserError,
    plane_label,
    run_planes,
)
from napari_rnon._worker import WorkerMixin

if TYPE_CHECKING:
    import napari
    from napari.qt.threading import FunctionWorker

logger = logging.getLogger(__name__)

# Method label -> (engine name, stages). "default" means the packaged RNON weights.
METHODS: dict[str, tuple[str, str]] = {
    "RNON (repair + optimise)": ("default", "both"),
    "RNON repair only": ("default", "repair"),
    "Telea (OpenCV)": ("telea", "repair"),
    "Navier-Stokes (OpenCV)": ("ns", "repair"),
    "Biharmonic (scikit-image)": ("biharmonic", "repair"),
}
RNON_METHODS = ("RNON (repair + optimise)", "RNON repair only")
CURRENT_PLANE = "current plane"
ALL_PLANES = "all planes"

# Open Inpaint widgets, so the Fine-tune widget can offer them its new weights.
_OPEN_WIDGETS: weakref.WeakSet[InpaintWidget] = weakref.WeakSet()


def register_weights(path: str | Path) -> None:
    """List ``path`` (fine-tuned weights) in every open Inpaint widget and select it there."""
    for widget in list(_OPEN_WIDGETS):
        try:
            widget.refresh_weights(select=path)
        except RuntimeError:  # its Qt widget is gone
            _OPEN_WIDGETS.discard(widget)


def _saved_weights_choices(_widget: Any = None) -> list[tuple[str, str]]:
    """Weights in the user weights folder (fine-tuned models), newest first."""
    from rnon_engine.train.finetune import list_user_weights

    return [(p.stem, str(p)) for p in list_user_weights()]


@dataclass(frozen=True)
class EngineSettings:
    """Everything that selects an engine instance (the cache key) plus the stages to run.

    Attributes:
        name_or_path: ``"default"``, a classical method name, or a weights file path.
        stage2: Optional separate stage-2 (optimise) weights file.
        device: ``"auto"``, ``"cpu"``, ``"cuda:0"``...
        tile_size: Tile side passed to the engine.
        stages: ``"both"``, ``"repair"`` or ``"optimize"``.
    """

    name_or_path: str
    stage2: str | None
    device: str
    tile_size: int
    stages: str

    @property
    def engine_key(self) -> tuple[Any, ...]:
        """The fields that select the Inpainter instance."""
        return (self.name_or_path, self.stage2, self.device, self.tile_size)


def available_devices() -> list[str]:
    """Devices torch can use here: ``auto``, ``cpu``, then each CUDA device, then ``mps``."""
    import torch

    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def load_inpainter(settings: EngineSettings) -> Any:
    """Build the engine's Inpainter for ``settings`` (runs in the worker thread)."""
    from rnon_engine.inference.inpainter import Inpainter

    return Inpainter.from_pretrained(
        name_or_path=settings.name_or_path,
        device=settings.device,
        stage2=settings.stage2,
        tile_size=settings.tile_size,
    )


@dataclass
class _Job:
    """One prepared run: everything the worker needs, checked on the GUI thread."""

    step: str  # "repair" | "optimise"
    source: Image  # the layer the user chose (named in the result)
    input_layer: Image  # the layer whose pixels are read (the repaired layer for optimise)
    mask_layer: Labels
    data: Any
    geometry: Any
    mask: MaskPlanes
    planes: list[PlaneIndex]
    settings: EngineSettings
    result_name: str
    outline: bool
    method_label: str


class InpaintWidget(WorkerMixin, Container):
    """Dock widget that repairs the masked pixels of an image layer.

    Args:
        viewer: The napari viewer (injected by napari when the widget is opened).
    """

    _what = "Inpainting"
    _busy_message = "A run is already going on; wait for it or click Cancel."
    _cancelled_message = "Inpainting cancelled; no layer was changed."

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._init_worker(int, int, on_progress=self._update_pbar)
        self._viewer = viewer
        self.inpainter_factory = load_inpainter
        self._inpainter: Any = None
        self._inpainter_key: tuple[Any, ...] | None = None
        self._job: _Job | None = None

        self._image = ComboBox(
            label="Image", choices=self._image_choices, nullable=True, tooltip="Image to repair"
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
        self._method = ComboBox(label="Method", choices=list(METHODS), value=RNON_METHODS[0])
        self._weights = FileEdit(
            label="Weights",
            mode="r",
            filter="*.safetensors",
            nullable=True,
            tooltip="RNON weights file (.safetensors); empty = the packaged model",
        )
        self._saved = ComboBox(
            label="My weights",
            choices=_saved_weights_choices,
            nullable=True,
            value=None,
            tooltip="Fine-tuned weights in the user weights folder (the Fine-tune widget "
            "saves there); choosing one fills Weights",
        )
        self._device = ComboBox(label="Device", choices=available_devices(), value="auto")
        self._planes = ComboBox(
            label="Planes",
            choices=[CURRENT_PLANE, ALL_PLANES],
            value=CURRENT_PLANE,
            tooltip="For stacks: repair the plane on screen, or every plane",
        )
        self._outline = CheckBox(text="Outline repaired pixels", value=False)
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
            tooltip="Run the RNON optimisation stage on the '<name> repaired' layer",
        )
        self._cancel_btn = PushButton(text="Cancel", enabled=False)
        buttons = Container(
            layout="horizontal",
            labels=False,
            widgets=[self._repair_btn, self._optimise_btn, self._cancel_btn],
        )
        self._status = Label(value="")
        self._status.native.setWordWrap(True)
        # Save the mask into the OME-Zarr + the rnon-batch command line (see _ome.py).
        self.batch = BatchSection(self)
        super().__init__(
            widgets=[
                self._image,
                self._mask,
                self._new_mask,
                self._method,
                self._weights,
                self._saved,
                self._device,
                self._planes,
                self._outline,
                self._show_advanced,
                self._advanced,
                buttons,
                self._status,
                self.batch,
            ],
        )
        self._image.changed.connect(self._on_image_changed)
        self._method.changed.connect(self._on_method_changed)
        self._saved.changed.connect(self._on_saved_changed)
        self._show_advanced.changed.connect(lambda v: setattr(self._advanced, "visible", v))
        self._new_mask.clicked.connect(self.new_mask)
        self._repair_btn.clicked.connect(lambda: self.run("repair"))
        self._optimise_btn.clicked.connect(lambda: self.run("optimise"))
        self._cancel_btn.clicked.connect(self.cancel)

        events = viewer.layers.events
        events.inserted.connect(self._on_layers_changed)
        events.removed.connect(self._on_layers_changed)
        events.moved.connect(self._on_layers_changed)
        events.removed.connect(self._on_layer_removed)
        for layer in viewer.layers:
            layer.events.name.connect(self._on_layers_changed)
        self._pick_defaults()
        self._on_method_changed(self._method.value)
        _OPEN_WIDGETS.add(self)

    # ----------------------------------------------------------------- choices
    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(ly.name, ly) for ly in self._viewer.layers if isinstance(ly, Image)]

    def _mask_choices(self, _widget: Any = None) -> list[tuple[str, Labels]]:
        return [(ly.name, ly) for ly in self._viewer.layers if isinstance(ly, Labels)]

    def _on_layers_changed(self, event: Any = None) -> None:
        inserted = None
        if event is not None and getattr(event, "type", "") == "inserted":
            inserted = event.value
            inserted.events.name.connect(self._on_layers_changed)
        try:
            self.reset_choices()
            self._pick_defaults(inserted=inserted)
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
        made_for = [m for m in masks if m.metadata.get(MASK_FOR_KEY) == image.name]
        if isinstance(prefer, Labels) and prefer in made_for:
            self._mask.value = prefer
        elif self._mask.value is None and made_for:
            self._mask.value = made_for[-1]
        elif self._mask.value is None and len(masks) == 1:
            self._mask.value = masks[0]

    def _on_image_changed(self, image: Image | None) -> None:
        stack = False
        if image is not None:
            try:
                stack = bool(layer_geometry(image).leading_shape)
            except UserError:
                stack = False
            current = self._mask.value
            if current is None or current.metadata.get(MASK_FOR_KEY) not in (None, image.name):
                self._mask.value = None
            self._pick_mask()
        self._planes.visible = stack

    def _on_saved_changed(self, path: str | None) -> None:
        if path:
            self._weights.value = path

    def refresh_weights(self, select: str | Path | None = None) -> None:
        """Re-read the user weights folder; with ``select``, choose that file as Weights."""
        self._saved.reset_choices()
        if select is None:
            return
        select = str(select)
        if select in [v for _, v in _saved_weights_choices()]:
            self._saved.value = select
        self._weights.value = select
        if self._method.value not in RNON_METHODS:
            self._method.value = RNON_METHODS[1]

    def _on_method_changed(self, label: str) -> None:
        rnon = label in RNON_METHODS
        self._weights.enabled = rnon
        self._saved.enabled = rnon
        self._stage2.enabled = rnon
        self._optimise_btn.enabled = rnon and self._worker is None

    # ---------------------------------------------------------------- actions
    def new_mask(self) -> Labels | None:
        """Add an empty mask for the chosen image, select it and switch to the brush."""
        image = self._image.value
        if image is None:
            show_warning("Choose an image layer first, then click 'New mask'.")
            return None
        try:
            layer = add_mask_layer(self._viewer, image)
        except UserError as exc:
            show_error(str(exc))
            return None
        self._mask.value = layer
        return layer

    def settings(self, step: str = "repair") -> EngineSettings:
        """The engine settings the widget's controls describe for ``step``."""
        name, stages = METHODS[self._method.value]
        weights = self._weights.value
        if name == "default" and weights is not None and str(weights) not in ("", "."):
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

    def _prepare(self, step: str) -> _Job:
        """Check the user's choices and build a job; raises UserError with the reason."""
        source = self._image.value
        if source is None or source not in self._viewer.layers:
            raise UserError("Choose the image layer to repair (Image).")
        input_layer = source
        if step == "optimise":
            if self._method.value not in RNON_METHODS:
                raise UserError("Optimise is the second RNON stage: choose an RNON method.")
            meta = source.metadata.get(META_KEY)
            if isinstance(meta, dict) and meta.get("source") in self._viewer.layers:
                input_layer = source
                source = self._viewer.layers[meta["source"]]
            else:
                repaired = f"{source.name} repaired"
                if repaired not in self._viewer.layers:
                    raise UserError(
                        f"Run 'Repair' first: 'Optimise' improves the layer '{repaired}'."
                    )
                input_layer = self._viewer.layers[repaired]
        mask_layer = self._mask.value
        if mask_layer is None or mask_layer not in self._viewer.layers:
            raise UserError(
                "No mask: click 'New mask' and paint the pixels to repair, "
                "or choose a Labels layer as Mask."
            )
        geometry = layer_geometry(input_layer)
        if geometry.shape != layer_geometry(source).shape:
            raise UserError(
                f"'{input_layer.name}' no longer has the shape of '{source.name}': "
                "run 'Repair' again."
            )
        if geometry.leading_shape and self._planes.value == ALL_PLANES:
            planes = geometry.all_planes()
            where = " in any plane"
        else:
            planes = [current_plane(self._viewer, source, geometry)]
            where = f" in {plane_label(planes[0])}" if planes[0] else ""
        mask = MaskPlanes(layer_data(mask_layer), geometry, planes)
        painted = mask.painted_planes()
        if painted is not None:
            if not painted:
                raise UserError(
                    f"The mask '{mask_layer.name}' has no painted pixels{where}. "
                    "Paint the pixels to repair with the brush (label 1), then run again."
                )
            planes = [p for p in planes if p in set(painted)]
        settings = self.settings(step)
        read_layer = input_layer
        for path in (settings.name_or_path, settings.stage2):
            if path is not None and path not in {n for n, _ in METHODS.values()}:
                if not Path(path).is_file():
                    raise UserError(f"Weights file not found: {path}. Choose an existing file.")
        suffix = "optimised" if step == "optimise" else "repaired"
        return _Job(
            step=step,
            source=source,
            input_layer=input_layer,
            mask_layer=mask_layer,
            data=layer_data(read_layer),
            geometry=geometry,
            mask=mask,
            planes=planes,
            settings=settings,
            result_name=f"{source.name} {suffix}",
            outline=bool(self._outline.value),
            method_label=str(self._method.value),
        )

    def run(self, step: str = "repair") -> FunctionWorker | None:
        """Start a run (``"repair"`` or ``"optimise"``) in a worker thread.

        Returns:
            The started worker, or None when the choices are not valid (a notification
            then says why) or a run is already going on.
        """
        job = self._prepare_run(self._prepare, step)
        if job is None:
            return None
        self._job = job
        self._status.value = f"Running {step} on {len(job.planes)} plane(s)..."
        self._t0 = time.perf_counter()
        return self._start_worker(
            self._work, job, self._on_returned, progress_desc=f"RNON: {step} {job.source.name}"
        )

    # ---------------------------------------------------- worker (other thread)
    def _work(self, job: _Job) -> RunResult:
        key = (self.inpainter_factory, job.settings.engine_key)
        if self._inpainter_key != key:
            self._inpainter = None
            self._inpainter = self.inpainter_factory(job.settings)
            self._inpainter_key = key
        inpainter = self._inpainter
        rgb = job.geometry.rgb

        def inpaint(plane: Any, mask: Any, progress: Any, cancel: Any) -> Any:
            return inpainter.inpaint(
                plane,
                mask,
                stages=job.settings.stages,
                channel_axis=-1 if rgb else None,
                progress=progress,
                cancel=cancel,
            )

        result = run_planes(
            job.data,
            job.geometry,
            job.mask,
            job.planes,
            inpaint,
            progress=self._relay.progress.emit,
            cancel=self._cancelled,
        )
        result.provenance = dict(getattr(inpainter, "provenance", {}) or {})
        return result

    # --------------------------------------------------------- GUI-thread ends
    def _on_returned(self, result: RunResult) -> None:
        try:
            self._apply(result)
        except Exception as exc:  # never let a bug take napari down: report it
            logger.error("RNON: writing the result failed", exc_info=exc)
            show_error(f"Writing the result failed ({type(exc).__name__}): {exc}")

    def _apply(self, result: RunResult) -> None:
        job = self._job
        if job is None:
            return
        for layer in (job.source, job.input_layer):
            if layer not in self._viewer.layers:
                show_warning(f"'{layer.name}' was removed during the run; nothing was written.")
                return
        if not result.planes:
            show_warning(
                f"Nothing to repair: the mask '{job.mask_layer.name}' has no painted pixels "
                "in the planes of this run. Paint the pixels to repair, then run again."
            )
            return
        provenance = {
            **result.provenance,
            "source": job.source.name,
            "input": job.input_layer.name,
            "mask": job.mask_layer.name,
            "step": job.step,
            "method_label": job.method_label,
            "settings": asdict(job.settings),
        }
        layer = apply_result(
            self._viewer,
            job.source,
            job.data,
            job.geometry,
            job.result_name,
            result.planes,
            provenance,
        )
        if job.outline:
            update_outline(
                self._viewer, job.source, job.mask_layer, f"{job.source.name} repaired pixels"
            )
        elapsed = time.perf_counter() - self._t0
        self._status.value = (
            f"{job.step.capitalize()}: {len(result.planes)} plane(s) of '{job.source.name}' "
            f"in {elapsed:.1f} s -> '{layer.name}'"
        )

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
        if event.value is job.source or event.value is job.input_layer:
            self.cancel(
                f"'{event.value.name}' was removed during the run; the run was stopped "
                "and no layer was changed."
            )

    def _set_running(self, running: bool) -> None:
        self._repair_btn.enabled = not running
        self._optimise_btn.enabled = not running and self._method.value in RNON_METHODS
        self._new_mask.enabled = not running
        self._cancel_btn.enabled = running
