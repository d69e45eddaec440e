"""Prune a trained repair generator to a smaller width, as a start for a thinner stage 1.

``python -m training.prune --weights default --width 0.125 --out thin.safetensors`` writes a
stage-1 generator of the given width made of the trained one's most useful channels
(:func:`rnon_engine.train.prune.prune_repair`). Train it on with the trained one as
teacher::

    python -m training.run --config cpu-lite --stage repair --init thin.safetensors
        --set repair.teacher=<the trained weights> --set repair.distill=0.5 ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rnon_engine.errors import RnonError


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m training.prune", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--weights",
        required=True,
        help="stage-1 weights to prune: 'default' (the packaged model) or a .safetensors path",
    )
    parser.add_argument("--width", type=float, required=True, help="the new channel multiplier")
    parser.add_argument("--out", type=Path, required=True, help="the pruned .safetensors file")
    args = parser.parse_args(argv)
    try:
        from rnon_engine.nn.weights import save_weights
        from rnon_engine.train.prune import prune_repair
        from training.stage1_file import check_out, load_stage1

        path, model = load_stage1(args.weights)
        if not 0 < args.width <= model.config.width:
            raise RnonError(
                f"--width must be in (0, {model.config.width}] (the weights' own width), "
                f"got {args.width}"
            )
        check_out(args.out)
        pruned = prune_repair(model, args.width)
        save_weights(pruned, args.out, pruned_from=path.name, pruned_width=args.width)
    except RnonError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n = sum(p.numel() for p in pruned.parameters())
    print(f"wrote {args.out}: width {args.width}, {n:,} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
