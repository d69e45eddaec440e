"""The ``rnon-batch`` command line for given settings (the napari widget's "copy command").

Built from ``rnon-batch``'s own argument parser (:func:`rnon_engine.batch.cli.build_parser`):
an option is written only when the value differs from the parser's default, so the command
stays as short as the settings allow and follows the CLI when its defaults change. No torch.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

__all__ = ["PLACEHOLDER_INPUT", "batch_command", "batch_defaults"]

PLACEHOLDER_INPUT = "STACK.zarr"


@functools.cache
def _parser() -> argparse.ArgumentParser:
    from rnon_engine.batch.cli import build_parser

    return build_parser()


def batch_defaults() -> dict[str, object]:
    """rnon-batch's defaults for the options a caller sets (``model``, ``tile``...)."""
    parser = _parser()
    return {key: parser.get_default(key) for key in ("model", "stage2", "stages", "device", "tile")}


def batch_command(
    input_path: str | Path | None,
    *,
    model: str,
    stage2: str | None = None,
    stages: str = "both",
    device: str = "auto",
    tile: int = 512,
    mask: str | None = None,
    estimate_error: bool = False,
) -> list[str]:
    """The ``rnon-batch`` argument list that repairs ``input_path`` with these settings.

    Options equal to rnon-batch's defaults are left out, so for an OME-Zarr image with a
    saved ``labels/repair``, the default model and settings this is just
    ``["rnon-batch", "stack.zarr"]``.

    Args:
        input_path: The stack on disk (``"STACK.zarr"`` placeholder when None).
        model: A method name or a weights file.
        stage2: A separate stage-2 weights file.
        stages: ``"both"``, ``"repair"`` or ``"optimize"``.
        device: ``"auto"``, ``"cpu"``, ``"cuda:0"``...
        tile: Tile side.
        mask: A ``--mask`` argument, when the mask is not the image's ``labels/repair``.
        estimate_error: Add ``--estimate-error`` (each plane's error estimate recorded).
    """
    from rnon_engine.inference.classical import CLASSICAL_METHODS

    def named(value: str) -> bool:  # a method or packaged-model name, not a file
        return not Path(value).suffix and "/" not in value and "\\" not in value

    defaults = batch_defaults()
    args = [_parser().prog, str(input_path) if input_path else PLACEHOLDER_INPUT]
    if mask:
        args += ["--mask", mask]
    if model != defaults["model"]:
        args += ["--model", model if named(model) else str(Path(model).resolve())]
    if model not in CLASSICAL_METHODS:
        if stage2 and stage2 != defaults["stage2"]:
            args += ["--stage2", str(Path(stage2).resolve())]
        if stages != defaults["stages"]:
            args += ["--stages", stages]
        if device != defaults["device"]:
            args += ["--device", device]
    if tile != defaults["tile"]:
        args += ["--tile", str(tile)]
    if estimate_error:
        args.append("--estimate-error")
    return args
