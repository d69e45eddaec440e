"""Train the stack model: ``python -m training.stack_run --corpus DIR --out DIR``.

Synthetic stacks around the corpus's training pictures (``manifest.json``, ``split ==
"train"``; see :mod:`rnon_engine.train.stacks`), the loop of
:mod:`rnon_engine.train.stack_training`. ``--resume`` continues from the run directory's
checkpoint; ``--max-minutes`` stops cleanly (checkpoint and exported weights).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rnon_engine.errors import RnonError


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m training.stack_run", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--corpus", required=True, type=Path, help="corpus folder (manifest.json)")
    p.add_argument("--out", required=True, type=Path, help="run directory (created)")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=112)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-minutes", type=float, help="wall-clock budget")
    p.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    from rnon_engine.train.stack_training import StackTrainConfig, train_stack

    if not (args.corpus / "manifest.json").is_file():
        print(f"error: {args.corpus} has no manifest.json (build it with training.corpus)",
              file=sys.stderr)
        return 2
    try:
        cfg = StackTrainConfig(
            steps=args.steps, batch_size=args.batch_size, crop=args.crop, width=args.width,
            lr=args.lr, seed=args.seed, threads=args.threads,
        )
        path = train_stack(
            args.corpus, args.out, cfg, resume=args.resume, max_minutes=args.max_minutes,
            log=lambda s: print(s, flush=True),
        )
    except (RnonError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"weights: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
