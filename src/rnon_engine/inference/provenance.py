"""What outputs record about the inpainter that made them, found without building it.

:func:`describe` gives the provenance that :meth:`Inpainter.from_pretrained(...).provenance
<rnon_engine.inference.Inpainter.from_pretrained>` records (method, weights paths and
SHA-256, stages, settings, package version) from the weights files' metadata alone
(:func:`~rnon_engine.inference.weights_source.resolve_weights`), and refuses missing,
corrupt or foreign files with the same errors, without importing torch. ``rnon-batch``
uses it in its driver process, which records the provenance but never runs a network; the
:class:`~rnon_engine.inference.Inpainter` builds its own provenance with
:func:`build_provenance` too, so the two cannot drift.
"""

from __future__ import annotations

import os
from typing import Any

from rnon_engine.errors import InputError, WeightsError
from rnon_engine.inference.settings import (
    NET_WINDOW_MULTIPLE,
    STAGE2_HALO,
    check_settings,
    default_margin,
)
from rnon_engine.inference.weights_source import WeightsSource, resolve_weights

__all__ = ["INTENSITY", "build_provenance", "describe"]

#: How intensities are mapped (:mod:`rnon_engine.inference.intensity`), as recorded.
INTENSITY = "uint8: v/255; others: 0.1-99.9 percentile of valid pixels per plane"


def build_provenance(
    method: str,
    name: str,
    stages: list[str],
    *,
    stage2_region: str,
    tile_size: int,
    context: int,
    window_multiple: int,
    network: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The provenance dict of an inpainter (what outputs record), ``extra`` merged last.

    ``network`` holds the networks' run settings (``backend``: ``"torch"`` or
    ``"onnxruntime"``, ``stage2_halo``, ``grid_tile``); None for classical methods.
    """
    from rnon_engine import __version__

    prov: dict[str, Any] = {
        "method": method,
        "name": name,
        "package_version": __version__,
        "stages": list(stages),
        "stage2_region": stage2_region,
        "tile_size": tile_size,
        "context": context,
        "window_multiple": window_multiple,
        "intensity": INTENSITY,
    }
    prov.update(network or {})
    prov.update(extra or {})
    return prov


def describe(
    name_or_path: str | os.PathLike = "default",
    *,
    stage2: str | os.PathLike | None = None,
    tile_size: int = 512,
    stage2_region: str = "band",
    margin: int | None = None,
    window_multiple: int | None = None,
    device: str = "auto",
    backend: str = "auto",
    stage2_halo: int | None = STAGE2_HALO,
    grid_tile: int | str | None = "auto",
) -> dict[str, Any]:
    """``Inpainter.from_pretrained(name_or_path, ...).provenance``, without loading anything.

    Takes the arguments of :meth:`~rnon_engine.inference.Inpainter.from_pretrained` that
    the provenance depends on, reads only the weights files' metadata (and hashes them),
    and never imports torch (except for ``device="auto"`` on a machine that may have a GPU:
    :func:`rnon_engine.device.device_type`). The ``backend`` recorded is the one the
    inpainter picks (:func:`~rnon_engine.inference.ort_runner.pick_backend`); an inpainter
    whose ONNX export fails at its first call runs, and records, ``"torch"`` instead.

    Returns:
        The same dict as the inpainter's :attr:`~rnon_engine.inference.Inpainter.provenance`.

    Raises:
        InputError: Unknown method name, bad ``tile_size`` or ``stage2_region``, or a
            ``backend`` that cannot run there.
        WeightsError: A weights file is missing, corrupt, foreign or of the wrong model.
    """
    check_settings(tile_size, stage2_region)
    if os.fspath(name_or_path) == "auto":  # each hole group to its best method
        from rnon_engine.inference.routing import describe_auto
        from rnon_engine.inference.stack_model import stack_provenance

        prov = describe_auto(stage2=stage2, tile_size=tile_size, stage2_region=stage2_region)
        try:  # with context_planes > 0: the stack model (as build_auto)
            prov.update(stack_provenance())
        except WeightsError:
            pass
        return prov
    if os.fspath(name_or_path) == "stack":  # the default model + the stack model
        from rnon_engine.inference.stack_model import stack_provenance

        prov = describe(
            "default", stage2=stage2, tile_size=tile_size, stage2_region=stage2_region,
            margin=margin, window_multiple=window_multiple, device=device, backend=backend,
            stage2_halo=stage2_halo, grid_tile=grid_tile,
        )
        prov.update(name="stack", **stack_provenance())
        return prov
    src = resolve_weights(name_or_path, stage2)
    from rnon_engine.inference.ort_runner import BACKENDS

    if backend not in BACKENDS:  # refused for every method, as by the Inpainter
        raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    network = None
    if src.method == "rnon":
        network = _network_settings(src, device, backend, stage2_halo, grid_tile)
    return build_provenance(
        src.method,
        src.name,
        src.stages,
        stage2_region=stage2_region,
        tile_size=tile_size,
        context=default_margin(src.method == "rnon", tile_size) if margin is None else margin,
        window_multiple=window_multiple or (NET_WINDOW_MULTIPLE if src.method == "rnon" else 1),
        network=network,
        extra=src.files(),
    )


def _network_settings(
    src: WeightsSource,
    device: str,
    backend: str,
    stage2_halo: int | None,
    grid_tile: int | str | None,
) -> dict[str, Any]:
    """The ``network`` entries of :func:`build_provenance` for weights files."""
    from rnon_engine.device import device_type
    from rnon_engine.inference.onnx_model import is_onnx_path
    from rnon_engine.inference.ort_runner import pick_backend

    if is_onnx_path(src.name):  # exported graphs: ONNX Runtime, stage 2 on its exact band
        return {"backend": "onnxruntime", "stage2_halo": None, "grid_tile": grid_tile}
    from rnon_engine.nn.weights import read_metadata

    pad_mode = read_metadata(src.repair)["config"].get("pad_mode", "hole")
    exportable = pad_mode == "hole" and all(r in src.sha256 for r in src.stages)
    return {
        "backend": pick_backend(backend, device_type(device), exportable),
        "stage2_halo": stage2_halo,
        "grid_tile": grid_tile,
    }
