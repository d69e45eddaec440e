"""``python -m training.export``: write a model as ONNX files or a bioimage.io package.

Examples::

    python -m training.export --weights default --format onnx --out export/
    python -m training.export --weights REPAIR.safetensors --format bioimageio --out export/

``--format onnx`` writes ``rnon_repair.onnx``, ``rnon_optimize.onnx`` (what
``Inpainter.from_pretrained("export/rnon_repair.onnx")`` and ``rnon-batch --model
export/rnon_repair.onnx`` run with ONNX Runtime) and ``rnon.onnx`` (both stages in one graph,
for other tools). ``--format bioimageio`` writes ``rnon-inpainting.zip`` (or the ``.zip``
path given as ``--out``), a package that deepImageJ, ilastik and QuPath open.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rnon_engine.errors import InputError, RnonError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m training.export",
        description="Export an RNON model to ONNX or as a bioimage.io package.",
    )
    p.add_argument(
        "--weights",
        default="default",
        help="'default' (the packaged model) or a repair-generator .safetensors file "
        "(its stage 2 is found as Inpainter.from_pretrained finds it)",
    )
    p.add_argument("--stage2", type=Path, default=None, help="explicit optimize-generator file")
    p.add_argument("--format", choices=("onnx", "bioimageio"), default="onnx")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output folder (bioimageio: a folder or a .zip path)",
    )
    return p


def _check(args: argparse.Namespace) -> None:
    """Refuse bad arguments before any work."""
    out: Path = args.out
    if args.format == "onnx" and out.suffix == ".zip":
        raise InputError(f"--out {out} is a .zip path: --format onnx writes into a folder")
    folder = out if not (args.format == "bioimageio" and out.suffix == ".zip") else out.parent
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--out {folder} exists and is not a folder; give a folder path")
    needed = ["onnx", "onnxruntime"]
    if args.format == "bioimageio":
        needed.append("bioimageio.spec")
    import importlib.util

    missing = [m for m in needed if importlib.util.find_spec(m.split(".")[0]) is None]
    if missing:
        extra = "bioimageio" if args.format == "bioimageio" else "onnx"
        raise InputError(
            f"--format {args.format} needs {', '.join(missing)}: pip install 'napari-rnon[{extra}]'"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit code (2 for a user error)."""
    args = build_parser().parse_args(argv)
    try:
        _check(args)
        if args.format == "onnx":
            from rnon_engine.export.onnx_export import export_onnx

            paths = export_onnx(args.weights, args.out, stage2=args.stage2)
            for role, path in paths.items():
                print(f"{role}: {path}")
        else:
            from rnon_engine.export.bioimageio_package import export_bioimageio

            print(export_bioimageio(args.weights, args.out, stage2=args.stage2))
    except RnonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
