"""One run of the Inpaint widget: what it repairs, the run itself, and its result layers.

:class:`Job` is prepared and checked on the GUI thread; :func:`run_job` runs in the worker
thread (no napari call there); :func:`apply_job` writes the result layers on the GUI
thread.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from napari_rnon._context import NeighbourPlanes, residual_inpaint
from napari_rnon._layers import (
    META_KEY,
    apply_result,
    layer_data,
    layer_geometry,
    place_on_top,
    update_outline,
)
from napari_rnon._methods import result_tag
from napari_rnon._planes import (
    MaskPlanes,
    PlaneIndex,
    RunResult,
    UserError,
    plane_label,
    run_planes,
)
from napari_rnon._run_record import PlaneRecorder, summary
from napari_rnon._settings import EngineSettings
from rnon_engine.inference.stack_context import stack_filler

if TYPE_CHECKING:
    from collections.abc import Callable

    import napari
    from napari.layers import Image, Labels

__all__ = ["Job", "Part", "apply_job", "duration", "prepare_job", "run_job"]


@dataclass
class Part:
    """One layer of a run (a multichannel image has one per channel)."""

    source: Image  # the layer named in the result
    input_layer: Image  # the layer whose pixels are read (a result layer for optimise)
    data: Any
    result_name: str


@dataclass
class Job:
    """One prepared run: everything the worker needs, checked on the GUI thread."""

    step: str  # "repair" | "optimise"
    parts: list[Part]
    mask_layer: Labels
    geometry: Any
    mask: MaskPlanes
    planes: list[PlaneIndex]
    settings: EngineSettings
    tag: str
    outline: bool
    method_label: str
    estimate: bool = False
    context_planes: int = 0  # 'Use neighbouring planes': K planes each side (first axis)

    @property
    def source(self) -> Image:
        """The first part's source layer."""
        return self.parts[0].source


def _optimise_input(
    viewer: napari.Viewer, source: Image, settings: EngineSettings
) -> tuple[Image, Image]:
    """(source, input layer) for Optimise: a chosen result, or the stage-1 result."""
    meta = source.metadata.get(META_KEY)
    if isinstance(meta, dict) and meta.get("source") in viewer.layers:
        return viewer.layers[meta["source"]], source
    stage1 = result_tag(EngineSettings(**{**asdict(settings), "stages": "repair"}))
    name = f"{source.name} repaired ({stage1})"
    if name not in viewer.layers:
        raise UserError(
            f"Run 'Repair' with 'RNON repair only' first: 'Optimise' improves the layer "
            f"'{name}' (or choose a result layer as Image)."
        )
    return source, viewer.layers[name]


def prepare_job(
    viewer: napari.Viewer,
    step: str,
    layers: list[Image],
    mask_layer: Labels,
    settings: EngineSettings,
    *,
    planes_of: Callable[[Image], list[PlaneIndex]],
    all_planes: bool,
    outline: bool,
    method_label: str,
    estimate: bool = False,
    context_planes: int = 0,
) -> Job:
    """Check a run's layers and mask and describe it (GUI thread).

    Args:
        viewer: The viewer holding the layers.
        step: ``"repair"`` or ``"optimise"`` (then each layer's input is its stage-1
            result, or the layer itself when it is a result).
        layers: The image layers to repair (several: the channels of one image).
        mask_layer: The mask (nonzero = repair).
        settings: The engine settings of the run.
        planes_of: The planes of the run for an image layer.
        all_planes: Whether the run covers every plane (for messages).
        outline: Whether to show the mask's outline after the run.
        method_label: The method as the widget names it (provenance).
        estimate: Whether to estimate the repair's error after each plane.
        context_planes: ``K > 0``: fill the holes that one of the ``K`` planes on either
            side along the first leading axis knows from them first (stacks only).

    Raises:
        UserError: A missing stage-1 result, shapes that differ, or nothing painted in
            the planes of the run; the message says what to do.
    """
    pairs = []
    for layer in layers:
        if step == "optimise":
            pairs.append(_optimise_input(viewer, layer, settings))
        else:
            pairs.append((layer, layer))
    source0, input0 = pairs[0]
    geometry = layer_geometry(input0)
    for source, input_layer in pairs:
        if layer_geometry(input_layer).shape != geometry.shape or (
            layer_geometry(source).shape != geometry.shape
        ):
            raise UserError(
                f"'{input_layer.name}' no longer has the shape of '{source0.name}': "
                "run 'Repair' again."
            )
    planes = planes_of(source0)
    if context_planes:
        if not geometry.leading_shape:
            raise UserError(
                "'Use neighbouring planes' needs a stack (an image with a leading Z or T "
                "axis): untick it for a single image."
            )
        n = geometry.leading_shape[0]
        if context_planes > n - 1:
            raise UserError(
                f"'Use neighbouring planes': {context_planes} planes each side, but the stack "
                f"has {n} planes along its first axis: choose at most {n - 1}."
            )
    if geometry.leading_shape and all_planes:
        where = " in any plane"
    else:
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
    if step == "optimise":
        base = input0.metadata.get(META_KEY, {}).get("tag") or result_tag(settings)
        tag = f"{base} + optimise"
    else:
        tag = result_tag(settings)
        if context_planes:  # another result than the plane-by-plane one: its own layer
            tag = f"{tag}, neighbours ±{context_planes}"
    parts = [
        Part(
            source=source,
            input_layer=input_layer,
            data=layer_data(input_layer),
            result_name=f"{source.name} repaired ({tag})",
        )
        for source, input_layer in pairs
    ]
    return Job(
        step=step,
        parts=parts,
        mask_layer=mask_layer,
        geometry=geometry,
        mask=mask,
        planes=planes,
        settings=settings,
        tag=tag,
        outline=outline,
        method_label=method_label,
        estimate=estimate,
        context_planes=context_planes if step == "repair" else 0,
    )


def run_job(
    job: Job,
    inpainter: Any,
    progress: Callable[[int, int], None],
    cancel: Callable[[], bool],
) -> list[RunResult]:
    """Repair every part of ``job`` with ``inpainter`` (worker thread).

    Args:
        job: The prepared run.
        inpainter: An engine with ``inpaint(plane, mask, stages=, channel_axis=,
            progress=, cancel=)`` and a ``provenance`` dict.
        progress: Called with ``(done, total)`` over all parts.
        cancel: Polled between tiles and planes.

    Returns:
        One :class:`RunResult` per part, in order; each provenance holds the hole pixels
        per method (``"auto"``) and, with ``job.estimate``, the error estimate
        (:func:`napari_rnon._run_record.summary`).
    """
    n_parts = len(job.parts)
    results = []
    for k, part in enumerate(job.parts):

        def report(done: int, total: int, k: int = k) -> None:
            progress(k * total + done, n_parts * total)

        recorder = PlaneRecorder(
            inpainter,
            stages=job.settings.stages,
            channel_axis=job.geometry.channel_axis,
            estimate=job.estimate,
        )
        data: Any = part.data
        repair: Any = recorder
        if job.context_planes:  # neighbouring planes first (_context.py)
            data = NeighbourPlanes(
                part.data, job.geometry, job.mask, job.context_planes, stack_filler(inpainter)
            )
            repair = residual_inpaint(data, recorder, job.estimate)
        result = run_planes(
            data,
            job.geometry,
            job.mask,
            job.planes,
            repair,
            progress=report,
            cancel=cancel,
        )
        result.provenance = {
            **dict(getattr(inpainter, "provenance", {}) or {}),
            **summary(list(result.planes), recorder.records),
        }
        results.append(result)
    return results


def apply_job(viewer: napari.Viewer, job: Job, results: list[RunResult]) -> list[Image]:
    """Write the result layers of ``job`` and show them on top (GUI thread).

    Each part's result goes into its layer ``part.result_name`` (created, or updated when
    it exists for that source), with the provenance in ``metadata["rnon"]``. The results
    are moved to the top in part order and made visible; for several parts (channels) the
    lowest is drawn opaque, so the composite is not results + sources. With
    ``job.outline`` the mask's outline goes on top of them.

    Returns:
        The result layers, in part order.
    """
    layers = []
    for part, result in zip(job.parts, results, strict=True):
        provenance = {
            **result.provenance,
            "source": part.source.name,
            "input": part.input_layer.name,
            "mask": job.mask_layer.name,
            "step": job.step,
            "tag": job.tag,
            "method_label": job.method_label,
            "settings": asdict(job.settings),
        }
        layers.append(
            apply_result(
                viewer,
                part.source,
                part.data,
                job.geometry,
                part.result_name,
                result.planes,
                provenance,
            )
        )
    if len(layers) > 1 and layers[0].blending == "additive":
        # the lowest result covers the sources, so the composite does not add up twice
        layers[0].blending = "translucent_no_depth"
    place_on_top(viewer, layers)
    if job.outline:
        outline = update_outline(
            viewer, job.source, job.mask_layer, f"{job.source.name} repaired pixels"
        )
        place_on_top(viewer, [outline])
    return layers


def duration(seconds: float) -> str:
    """``"12 s"``, ``"3 min"``, ``"1 h 05 min"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    return f"{int(minutes // 60)} h {int(minutes % 60):02d} min"
