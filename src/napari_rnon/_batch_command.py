"""The ``rnon-batch`` command line that repairs a whole stack like the Inpaint widget.

Built from ``rnon-batch``'s own argument parser (:func:`rnon_engine.batch.cli.build_parser`):
an option is written only when the widget's value differs from the parser's default, so
the command stays as short as the settings allow and follows the CLI when its defaults
change. No Qt, no torch.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

from napari_rnon._settings import EngineSettings

__all__ = ["batch_command", "batch_defaults", "default_output"]

PLACEHOLDER_INPUT = "STACK.zarr"


@functools.cache
def _parser() -> argparse.ArgumentParser:
    from rnon_engine.batch.cli import build_parser

    return build_parser()


def batch_defaults() -> dict[str, object]:
    """rnon-batch's defaults for the options the widget sets (``model``, ``tile``...)."""
    parser = _parser()
    return {key: parser.get_default(key) for key in ("model", "stage2", "stages", "device", "tile")}


def _classical() -> tuple[str, ...]:
    from rnon_engine.classical import CLASSICAL_METHODS

    return tuple(CLASSICAL_METHODS)


def batch_command(
    settings: EngineSettings, input_path: str | Path | None, *, mask: str | None = None
) -> list[str]:
    """The ``rnon-batch`` argument list that repairs ``input_path`` like the widget would.

    Options equal to rnon-batch's defaults are left out, so for an OME-Zarr image with a
    saved ``labels/repair``, the packaged model and default settings this is just
    ``["rnon-batch", "stack.zarr"]``.

    Args:
        settings: The widget's settings for "Repair".
        input_path: The stack on disk (``"STACK.zarr"`` placeholder when None).
        mask: A ``--mask`` argument, when the mask is not the image's ``labels/repair``.
    """
    defaults = batch_defaults()
    classical = _classical()
    args = [_parser().prog, str(input_path) if input_path else PLACEHOLDER_INPUT]
    if mask:
        args += ["--mask", mask]
    name = settings.name_or_path
    if name != defaults["model"]:
        args += ["--model", name if name in classical else str(Path(name).resolve())]
    if name not in classical:
        if settings.stage2 and settings.stage2 != defaults["stage2"]:
            args += ["--stage2", str(Path(settings.stage2).resolve())]
        if settings.stages != defaults["stages"]:
            args += ["--stages", settings.stages]
        if settings.device != defaults["device"]:
            args += ["--device", settings.device]
    if settings.tile_size != defaults["tile"]:
        args += ["--tile", str(settings.tile_size)]
    return args


def default_output(input_path: Path) -> Path:
    """Where ``rnon-batch INPUT`` writes without ``--output``.

    As its ``--output`` help says: INPUT's name with ``.repaired`` before its suffix
    (``stack.repaired.zarr``), beside it.
    """
    name = input_path.name
    for suffix in (".ome.zarr", ".ome.tiff", ".ome.tif", input_path.suffix):
        if suffix and name.lower().endswith(suffix):
            return input_path.with_name(name[: -len(suffix)] + ".repaired" + name[-len(suffix) :])
    return input_path.with_name(name + ".repaired")
