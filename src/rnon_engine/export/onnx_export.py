"""Write the RNON generators as ONNX graphs with dynamic batch, height and width.

:func:`export_onnx` writes these files into a folder:

- ``rnon_repair.onnx`` (stage 1): inputs ``image`` ``[N,3,H,W]`` float32 in [0, 1],
  ``mask`` ``[N,1,H,W]`` float32 (nonzero = repair) and ``pad`` ``[P]`` (its length is the
  padding multiple, see :class:`~rnon_engine.export.graphs.RepairGraph`); output
  ``output`` ``[N,3,H,W]``, composited.
- ``rnon_repair_small.onnx`` (with the push-pull prefill): the same stage 1 with fewer
  push-pull levels, exact for inputs whose shorter side is at most its metadata's
  ``max_side``; the inpainter runs small windows through it (named in the repair file's
  metadata, ``small_windows_file``; optional).
- ``rnon_repair_box.onnx`` (with the push-pull prefill): the small-window stage 1 that
  also takes ``box`` (int64 ``y0, y1, x0, x1``, holding every hole pixel of the batch),
  computes its finest decoder levels there and returns that box (named in the repair
  file's metadata, ``box_file``; optional).
- ``rnon_optimize.onnx`` (stage 2, when the model has one): ``image -> output``, not
  composited (the inpainter composites it on a band around the holes); a guided stage 2
  (``OptimizeConfig.guide``) takes ``image``, ``guide`` and ``valid``, the guide fill being
  computed outside the graph. ``rnon_optimize_box.onnx`` (guided only): the same with
  ``box``, refining that box only (named in its metadata, ``box_file``; optional).
- ``rnon.onnx``: both stages for other tools: ``image``, ``mask`` -> ``output``, padded to
  the U-Net's ``2**depth`` and composited after each stage (stage 1 only when stage 2 is
  guided: its guide fill is not an ONNX operation; the metadata's ``stages`` says which).

Each file carries the weights' model name, config, source and SHA-256 in its metadata
(``metadata_props``), so :mod:`rnon_engine.inference.onnx_model` can run it with ONNX
Runtime alone, through the inpainter's tiling. The graphs are traced with torch's
TorchScript-based ONNX exporter (opset 17): the sizes are traced as graph values, so one
graph serves every size.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from rnon_engine.errors import InputError
from rnon_engine.export.graphs import (
    BOX_LEVELS,
    SMALL_WINDOW_LEVELS,
    OptimizeGraph,
    PipelineGraph,
    RepairGraph,
    exact_side,
)
from rnon_engine.export.slices import merge_slices
from rnon_engine.inference.settings import NET_WINDOW_MULTIPLE
from rnon_engine.inference.weights_source import resolve_weights

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "OPSET",
    "FILES",
    "export_graphs",
    "export_onnx",
    "export_torchscript",
    "load_generators",
]

FORMAT_NAME = "napari-rnon-onnx"
FORMAT_VERSION = "1"
OPSET = 17
#: The files :func:`export_onnx` writes, by role.
FILES = {
    "repair": "rnon_repair.onnx",
    "repair_small": "rnon_repair_small.onnx",
    "repair_box": "rnon_repair_box.onnx",
    "optimize": "rnon_optimize.onnx",
    "optimize_box": "rnon_optimize_box.onnx",
    "pipeline": "rnon.onnx",
}

_IMAGE_AXES = {0: "batch", 2: "height", 3: "width"}


def _export(
    module: torch.nn.Module,
    args: tuple,
    path: Path,
    names: list[str],
    output_axes: dict[int, str] = _IMAGE_AXES,
) -> None:
    """Trace ``module`` on ``args`` and write it to ``path`` with dynamic N, H, W.

    A 1-D ``pad`` input has a dynamic length; a ``box`` input is four numbers.
    """
    axes: dict[str, dict[int, str]] = {}
    for name, arg in zip(names, args, strict=True):
        if arg.ndim == 4:
            axes[name] = _IMAGE_AXES
        elif name == "pad":
            axes[name] = {0: "pad_multiple"}
    axes["output"] = output_axes
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about every size it turns into a graph value: that is the point.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            input_names=names,
            output_names=["output"],
            dynamic_axes=axes,
            opset_version=OPSET,
        )


def _finish_export(path: Path, meta: dict[str, Any]) -> None:
    """Rewrite the exported ``path`` once: chained ``Slice`` nodes merged, metadata set.

    Every exported file passes here (:func:`merge_slices`; one load and save for both).
    """
    import onnx

    model = onnx.load(str(path))
    merge_slices(model)
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    model.doc_string = str(meta.get("description", ""))
    onnx.save(model, str(path))


def export_graphs(
    repair: torch.nn.Module,
    optimize: torch.nn.Module | None,
    out_dir: str | os.PathLike,
    *,
    metadata: dict[str, Any] | None = None,
    pipeline_only: bool = False,
) -> dict[str, Path]:
    """Export generator modules (see the module docstring for the files).

    Args:
        repair: An ``"rnon-repair"`` generator (``pad_mode="hole"``).
        optimize: The ``"rnon-optimize"`` generator, or None (stage 1 only).
        out_dir: Folder to write into (created); files of the same names are replaced.
        metadata: Extra metadata entries for every file (source, hashes...).
        pipeline_only: Write ``rnon.onnx`` alone (what a bioimage.io package holds).

    Returns:
        The written paths by role (``"repair"``, ``"optimize"``, ``"pipeline"``).
    """
    final = Path(out_dir)
    final.mkdir(parents=True, exist_ok=True)
    # Written into a temporary folder beside the files, moved in place at the end: an
    # export that fails leaves nothing half-written.
    with tempfile.TemporaryDirectory(dir=final, prefix=".rnon-export-") as tmp:
        paths = _export_all(repair, optimize, Path(tmp), metadata, pipeline_only)
        for role, path in paths.items():
            os.replace(path, final / path.name)
            paths[role] = final / path.name
    return paths


def _export_all(
    repair: torch.nn.Module,
    optimize: torch.nn.Module | None,
    out: Path,
    metadata: dict[str, Any] | None,
    pipeline_only: bool,
) -> dict[str, Path]:
    repair = repair.cpu().float().eval()
    # Wrappers in eval mode too: the exporter restores the mode it found, recursively.
    rgraph = RepairGraph(repair).eval()
    ograph = OptimizeGraph(optimize.cpu().float().eval()).eval() if optimize is not None else None
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 40, 56, generator=gen)
    mask = (torch.rand(1, 1, 40, 56, generator=gen) > 0.8).float()
    pad = torch.zeros(NET_WINDOW_MULTIPLE)
    common = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **(metadata or {})}
    paths: dict[str, Path] = {}
    if not pipeline_only:
        _export_stages(rgraph, ograph, out, common, paths, (image, mask, pad))
    paths["pipeline"] = out / FILES["pipeline"]
    _export(
        PipelineGraph(rgraph, ograph).eval(), (image, mask), paths["pipeline"], ["image", "mask"]
    )
    _finish_export(
        paths["pipeline"],
        {
            **common,
            "model_name": "rnon-pipeline",
            "role": "pipeline",
            "config": asdict(repair.config),
            "multiple": repair.multiple,
            "stages": ["repair", "optimize"]
            if ograph is not None and not ograph.guided
            else ["repair"],
            "description": "napari-rnon, both stages: image [N,3,H,W] in [0, 1], mask "
            "[N,1,H,W] (nonzero = repair) -> image, composited (pixels outside the mask "
            "are the input's)",
        },
    )
    return paths


def _export_stages(
    rgraph: RepairGraph,
    ograph: OptimizeGraph | None,
    out: Path,
    common: dict[str, Any],
    paths: dict[str, Path],
    args: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> None:
    """Write ``rnon_repair.onnx`` and ``rnon_optimize.onnx`` (the inpainter's files)."""
    image, mask, pad = args
    repair = rgraph.net
    paths["repair"] = out / FILES["repair"]
    _export(rgraph, (image, mask, pad), paths["repair"], ["image", "mask", "pad"])
    rmeta = {
        **common,
        "model_name": "rnon-repair",
        "role": "repair",
        "config": asdict(repair.config),
        "multiple": repair.multiple,
        "description": "napari-rnon stage 1 (repair network): image, mask (nonzero = "
        "repair), pad (length = padding multiple) -> composited image in [0, 1]",
    }
    box_axes = {0: "batch", 2: "box_height", 3: "box_width"}
    if repair.config.prefill == "pushpull":
        # The same graph with fewer push-pull levels: the inpainter's small windows.
        small = RepairGraph(repair, rgraph.pad_multiple, levels=SMALL_WINDOW_LEVELS).eval()
        paths["repair_small"] = out / FILES["repair_small"]
        _export(small, (image, mask, pad), paths["repair_small"], ["image", "mask", "pad"])
        max_side = exact_side(SMALL_WINDOW_LEVELS)
        _finish_export(
            paths["repair_small"],
            {
                **rmeta,
                "role": "repair-small",
                "max_side": max_side,
                "description": f"{rmeta['description']}; for inputs whose shorter side is at "
                f"most {max_side} px (the same outputs as {FILES['repair']} there)",
            },
        )
        # And one that also takes the holes' box and computes its last layers there.
        paths["repair_box"] = out / FILES["repair_box"]
        _export(
            small, (image, mask, pad, torch.tensor([3, 31, 5, 50])), paths["repair_box"],
            ["image", "mask", "pad", "box"], box_axes,
        )
        _finish_export(
            paths["repair_box"],
            {
                **rmeta,
                "role": "repair-box",
                "max_side": max_side,
                "box_levels": BOX_LEVELS,
                "description": "napari-rnon stage 1 (repair network) for the inpainter's "
                "windows: image, mask (nonzero = repair), pad (length = padding multiple, "
                f"at least {2**BOX_LEVELS}), box (int64 y0, y1, x0, x1: a box holding every "
                "hole pixel of the batch) -> that box of the composited image in [0, 1]; "
                f"for inputs whose shorter side is at most {max_side} px (there the same "
                f"values as {FILES['repair']}'s in the box)",
            },
        )
        rmeta["small_windows_file"] = FILES["repair_small"]
        rmeta["small_windows_max_side"] = max_side
        rmeta["box_file"] = FILES["repair_box"]
    if ograph is not None:
        rmeta["stage2_file"] = FILES["optimize"]
        paths["optimize"] = out / FILES["optimize"]
        ometa = {
            **common,
            "model_name": "rnon-optimize",
            "role": "optimize",
            "config": asdict(ograph.net.config),
            "halo": ograph.net.config.halo,
            "description": "napari-rnon stage 2 (optimization network): image -> image "
            "in [0, 1], not composited"
            + (
                f"; guided: also guide (the {ograph.net.config.guide} fill of the holes) "
                "and valid (1 = known pixel)"
                if ograph.guided
                else ""
            ),
        }
        if ograph.guided:
            valid = 1.0 - mask
            guided = (image, image.flip(-1), valid)
            names = ["image", "guide", "valid"]
            _export(ograph, guided, paths["optimize"], names)
            # And one that also takes the holes' box and refines that box only.
            paths["optimize_box"] = out / FILES["optimize_box"]
            _export(
                ograph, (*guided, torch.tensor([2, 30, 4, 41])), paths["optimize_box"],
                [*names, "box"], box_axes,
            )
            _finish_export(
                paths["optimize_box"],
                {
                    **ometa,
                    "role": "optimize-box",
                    "description": f"{ometa['description']}, and box (int64 y0, y1, x0, x1: "
                    "a box holding every hole pixel) -> that box of the refined image",
                },
            )
            ometa["box_file"] = FILES["optimize_box"]
        else:
            _export(ograph, (image,), paths["optimize"], ["image"])
        _finish_export(paths["optimize"], ometa)
    _finish_export(paths["repair"], rmeta)


def export_onnx(
    weights: str | os.PathLike = "default",
    out_dir: str | os.PathLike = "export",
    *,
    stage2: str | os.PathLike | None = None,
    pipeline_only: bool = False,
) -> dict[str, Path]:
    """Export a weights file (or ``"default"``) to ONNX.

    Args:
        weights: ``"default"`` or the path of a repair-generator ``.safetensors`` file;
            its stage 2 is found as :meth:`Inpainter.from_pretrained
            <rnon_engine.inference.Inpainter.from_pretrained>` finds it.
        out_dir: Folder to write into.
        stage2: Explicit optimize-generator file.
        pipeline_only: Write ``rnon.onnx`` alone.

    Returns:
        The written paths by role.

    Raises:
        InputError: A classical method name, or a model that cannot be exported.
        WeightsError: A weights file is missing, corrupt or foreign.
    """
    repair, optimize, meta = load_generators(weights, stage2)
    return export_graphs(repair, optimize, out_dir, metadata=meta, pipeline_only=pipeline_only)


def load_generators(
    weights: str | os.PathLike = "default", stage2: str | os.PathLike | None = None
) -> tuple[torch.nn.Module, torch.nn.Module | None, dict[str, Any]]:
    """Load the generators to export, and the metadata that the exported files record.

    Raises:
        InputError: A classical method name, or a model that cannot be exported.
        WeightsError: A weights file is missing, corrupt or foreign.
    """
    from rnon_engine.nn.weights import load_model

    src = resolve_weights(weights, stage2)
    if src.method != "rnon":
        raise InputError(f"{weights!r} is a classical method: there is no network to export")
    repair = load_model(src.repair)
    if repair.config.pad_mode != "hole":
        raise InputError(
            f"{src.repair} pads with {repair.config.pad_mode!r}: only pad_mode='hole' models "
            "can be exported to ONNX"
        )
    optimize = load_model(src.optimize) if src.optimize is not None else None
    meta: dict[str, Any] = {
        "source": os.fspath(weights) if weights == "default" else Path(weights).name,
        "source_sha256": src.sha256,
    }
    for key in ("run", "step", "description"):
        if key in repair.metadata:
            meta[f"source_{key}"] = repair.metadata[key]
    return repair, optimize, meta


def export_torchscript(
    repair: torch.nn.Module, optimize: torch.nn.Module | None, path: str | os.PathLike
) -> Path:
    """Write both stages as one traced TorchScript module (``rnon.onnx``'s twin).

    The tracer records the sizes as graph values here too, so the module takes any
    batch, height and width (``tests/test_export.py`` checks it on several sizes).
    """
    rgraph = RepairGraph(repair.cpu().float().eval()).eval()
    ograph = OptimizeGraph(optimize.cpu().float().eval()).eval() if optimize is not None else None
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 40, 56, generator=gen)
    mask = (torch.rand(1, 1, 40, 56, generator=gen) > 0.8).float()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(PipelineGraph(rgraph, ograph).eval(), (image, mask))
    path = Path(path)
    traced.save(str(path))
    return path
