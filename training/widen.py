"""Widen a trained repair generator's last decoder layer, as a start for training it on.

``python -m training.widen --weights default --head-channels 16 --out wide.safetensors``
writes a stage-1 generator whose last decoder layer has 16 outputs and which computes what
the given one computes (:func:`rnon_engine.train.widen.widen_head`). Train it on, e.g. the
widened layers only::

    python -m training.run --config <config> --stage repair --init wide.safetensors
        --set "repair.trainable=[decoder.7, head]" ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rnon_engine.errors import RnonError


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m training.widen", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--weights",
        required=True,
        help="stage-1 weights to widen: 'default' (the packaged model) or a .safetensors path",
    )
    parser.add_argument(
        "--head-channels", type=int, required=True, help="outputs of the last decoder layer"
    )
    parser.add_argument("--out", type=Path, required=True, help="the widened .safetensors file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the new filters")
    args = parser.parse_args(argv)
    try:
        from rnon_engine.nn.weights import save_weights
        from rnon_engine.train.widen import widen_head
        from training.stage1_file import check_out, load_stage1

        path, model = load_stage1(args.weights)
        old = model.config.last_channels
        if not old <= args.head_channels <= 512:
            raise RnonError(
                f"--head-channels must be in [{old}, 512] (the layer has {old} outputs), "
                f"got {args.head_channels}"
            )
        check_out(args.out)
        wide = widen_head(model, args.head_channels, seed=args.seed)
        save_weights(wide, args.out, widened_from=path.name, head_channels=args.head_channels)
    except RnonError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n = sum(p.numel() for p in wide.parameters())
    print(f"wrote {args.out}: last decoder layer {args.head_channels} outputs, {n:,} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
