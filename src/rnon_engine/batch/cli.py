"""The ``rnon-batch`` command line (see docs/batch.md for the full guide)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

from rnon_engine.errors import Cancelled, RnonError

__all__ = ["build_parser", "main"]

EPILOG = """\
examples:
  rnon-batch stack.ome.zarr --mask mask.zarr --output repaired.ome.zarr
  rnon-batch stack.tif --mask-value 65535 --output repaired.tif --model telea
  rnon-batch images/ --mask masks/ --output out/ --workers 2
  rnon-batch stack.zarr     (mask from stack.zarr/labels/repair, output stack.repaired.zarr)

Axes come from OME metadata when present, else from --axes, else from zarr
dimension_names, else from the rule: the last two axes are Y X, earlier axes are
inpainted plane by plane, and a trailing axis of 3 or 4 in an image file (or the
samples axis of an RGB TIFF) is colour. Channels of zarr/OME-Zarr data are
inpainted one by one.

Run the same command again after an interruption (Ctrl-C, a killed job) to finish
what is left; finished blocks are not computed again. After Save mask (Replace) in
napari, the same command recomputes only the blocks whose mask changed.

exit status: 0 done; 2 bad input, arguments or output (found before the run:
nothing written; found while running, e.g. a damaged chunk or a full disk: the
message says so and the output resumes); 130 Ctrl-C, 143 SIGTERM (resumable).
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``rnon-batch``."""
    p = argparse.ArgumentParser(
        prog="rnon-batch",
        description=(
            "Inpaint (repair) the masked pixels of a large image stack, plane by plane, "
            "with the RNON networks or a classical method. Pixels outside the mask are "
            "copied bit for bit; the output keeps the input's shape, dtype and chunking."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "input",
        metavar="INPUT",
        help="zarr array or group (v2 or v3), OME-Zarr image, TIFF / OME-TIFF, a single "
        "image file, or a folder of images. Never modified.",
    )
    p.add_argument(
        "--mask",
        metavar="MASK",
        help="repair mask, nonzero = repair: same kinds as INPUT, with INPUT's shape or its "
        "trailing YX shape (broadcast over the leading axes); for a folder INPUT a folder "
        "of same-named masks. Default for an OME-Zarr INPUT: INPUT/labels/repair.",
    )
    p.add_argument(
        "--mask-value",
        metavar="V",
        type=float,
        help="instead of --mask, repair the pixels of INPUT equal to V (dead or saturated "
        "pixels; any channel of an RGB image).",
    )
    p.add_argument(
        "--output",
        "-o",
        metavar="OUTPUT",
        help="where to write: a .zarr directory (zarr or OME-Zarr input), a .tif file (TIFF "
        "input), an image file, or a folder (folder input). Default: INPUT's name with "
        "'.repaired' before its suffix, beside it.",
    )
    p.add_argument(
        "--model",
        default="auto",
        metavar="auto|default|PATH|telea|ns|biharmonic|neighbours|stack",
        help="'auto' (the default: each hole goes to the method measured best for its kind, "
        "thin damage and dust to biharmonic, spots and larger holes to the packaged RNON "
        "networks), 'default' (the packaged RNON networks for every hole), the path of a "
        "repair-generator .safetensors file, an exported rnon_repair.onnx (ONNX Runtime on "
        "the CPU, no torch), a classical method, 'neighbours' (stacks: neighbouring planes, "
        "biharmonic where no plane within --context-planes knows a pixel) or 'stack' (stacks: "
        "the learned stack model, the packaged RNON networks where no plane knows a pixel; "
        "'auto' uses the stack model too with --context-planes) (default: "
        "%(default)s).",
    )
    p.add_argument(
        "--stage2",
        metavar="PATH",
        help="optimize-generator weights for stage 2 (default: the one named by the repair "
        "weights, if any).",
    )
    p.add_argument(
        "--stages",
        choices=("both", "repair"),
        default="both",
        help="'both' (repair, then optimize) or 'repair' only (default: %(default)s).",
    )
    p.add_argument(
        "--axes",
        metavar="AXES",
        help="one letter per INPUT dimension from T C Z Y X Q (Q = any other axis), e.g. "
        "TZYX; only for data without OME metadata.",
    )
    grp = p.add_mutually_exclusive_group()
    grp.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="start a local dask cluster of N worker processes (one model per worker).",
    )
    grp.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="use an existing dask.distributed scheduler, e.g. tcp://10.0.0.5:8786.",
    )
    p.add_argument(
        "--device",
        default="auto",
        help="torch device for the networks: auto, cpu, cuda, cuda:1, mps (default: auto).",
    )
    p.add_argument(
        "--tile",
        type=int,
        default=512,
        metavar="PX",
        help="largest window the network sees, in pixels (default: %(default)s).",
    )
    p.add_argument(
        "--halo",
        type=int,
        default=128,
        metavar="PX",
        help="context read around each block when planes are too big for one block and are "
        "cut into YX chunks (default: %(default)s).",
    )
    p.add_argument(
        "--max-block-mb",
        type=float,
        default=512.0,
        metavar="MB",
        help="largest block of whole YX planes before planes are cut into YX chunks "
        "(default: %(default)s).",
    )
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch threads per process and, without --workers/--scheduler, the number of "
        "blocks run at once (default: torch's choice, 2 blocks).",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an OUTPUT that exists and was not written by this same command.",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (planes, blocks and tiles with holes, estimated time from a "
        "short probe) and write nothing.",
    )
    p.add_argument(
        "--estimate-error",
        action="store_true",
        help="also estimate each repaired plane's error (root-mean-square, in INPUT's values: "
        "known pixels near the holes are hidden in the holes' shapes and repaired the same "
        "way; about two more repairs per plane) and record it in the output's rnon_batch "
        "attributes, entry error_estimate (image files: in the run's .rnon-batch.json).",
    )
    p.add_argument(
        "--context-planes",
        type=int,
        default=0,
        metavar="K",
        help="repair stacks from their neighbouring planes: hole pixels known in one of the K "
        "planes on either side along the stack axis are filled from them (the learned stack "
        "model for --model auto and stack; for the others distance-weighted, with a smooth "
        "intensity correction to the plane's own border), the rest by --model "
        "(default: 0, each plane alone; 2 with --model neighbours or stack).",
    )
    p.add_argument(
        "--stack-axis",
        metavar="A",
        help="the stack axis for --context-planes: a letter of INPUT's axes (Z, T...) or an "
        "index (default: Z if INPUT has one, else T, else INPUT's only leading axis).",
    )
    p.add_argument("--no-progress", action="store_true", help="do not show the progress bar.")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``rnon-batch``; returns the exit status (0, 2 bad input, 130 Ctrl-C, 143 SIGTERM)."""
    from rnon_engine.batch import BatchOptions, run_batch

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    # ome-zarr logs harmless warnings (e.g. "no parent found" for a label image read on
    # its own, "version mismatch" for NGFF 0.4) that would bury the real messages.
    logging.getLogger("ome_zarr").setLevel(logging.ERROR)
    opts = BatchOptions(
        input=args.input,
        mask=args.mask,
        output=args.output,
        mask_value=args.mask_value,
        model=args.model,
        stage2=args.stage2,
        stages=args.stages,
        axes=args.axes,
        workers=args.workers,
        scheduler=args.scheduler,
        device=args.device,
        tile=args.tile,
        halo=args.halo,
        max_block_mb=args.max_block_mb,
        context_planes=args.context_planes,
        stack_axis=args.stack_axis,
        threads=args.threads,
        overwrite=args.overwrite,
        dry_run=args.dry_run,
        estimate_error=args.estimate_error,
        progress=not args.no_progress,
        argv=argv,
    )
    previous = _on_sigterm()
    try:
        run_batch(opts)
    except Cancelled as exc:
        print(f"rnon-batch: {exc}", file=sys.stderr)
        return 143 if "SIGTERM" in str(exc) else 130
    except RnonError as exc:
        print(f"rnon-batch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        how = str(exc) or "Ctrl-C"
        print(
            f"rnon-batch: stopped by {how}; run the same command again to resume.", file=sys.stderr
        )
        return 143 if how == "SIGTERM" else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _on_sigterm() -> Any:
    """Make SIGTERM stop the run like Ctrl-C (a message, resumable); returns the old handler.

    Only in the main thread (signal handlers cannot be set elsewhere); None otherwise.
    """
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM")

    return signal.signal(signal.SIGTERM, stop)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
