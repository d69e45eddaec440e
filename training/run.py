"""Train RNON: ``python -m training.run --config FILE --data DIR --out DIR``.

Trains stage 1 (repair), stage 2 (optimize) or both in order. Stops cleanly (checkpoint
and exported weights) at ``--max-steps``, ``--max-minutes``, Ctrl-C or SIGTERM;
``--resume`` continues from the run directory's last checkpoint. Launch the same command
with ``torchrun --nproc_per_node N -m training.run ...`` for data-parallel training.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from rnon_engine.errors import RnonError


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m training.run", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--config",
        required=True,
        help="YAML config file, or the name of a packaged one (paper, cpu-lite, finetune)",
    )
    p.add_argument("--data", required=True, type=Path, help="folder of training images (recursive)")
    p.add_argument("--val", type=Path, help="folder of validation images (fixed crops and masks)")
    p.add_argument("--out", required=True, type=Path, help="run directory (created)")
    p.add_argument("--stage", choices=["repair", "optimize", "both"], default="both")
    p.add_argument(
        "--max-steps", type=int, help="stop each stage at this step (default: the config's)"
    )
    p.add_argument("--max-minutes", type=float, help="wall-clock budget for the whole command")
    p.add_argument(
        "--resume", action="store_true", help="continue from the run directory's checkpoints"
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--init",
        help="start the repair generator from these weights: 'default' (the packaged model) "
        "or a .safetensors path; the architecture comes from the weights",
    )
    p.add_argument(
        "--exclude",
        type=Path,
        metavar="DIR",
        help="folder of bad-pixel masks mirroring --data (a.png for a.tif; nonzero = bad): "
        "those pixels are never input nor training target",
    )
    p.add_argument(
        "--exclude-value",
        type=float,
        metavar="V",
        help="pixels whose stored value equals V (in any channel) are bad, as with --exclude",
    )
    p.add_argument(
        "--continue-from",
        type=Path,
        metavar="WEIGHTS",
        help="continue a run whose full checkpoint is gone (e.g. on a fresh machine) from a "
        "generator it exported: its weights and step are taken from the file (optimiser "
        "state starts afresh); needs a single --stage",
    )
    p.add_argument(
        "--repair-weights", type=Path, help="stage 2: frozen stage-1 weights (default: this run's)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set repair.batch_size=8 (YAML value syntax)",
    )
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    return p


def resolve_config_path(name: str) -> Path:
    """A path, or the name of a packaged config (``rnon_engine/train/configs/``)."""
    from rnon_engine.train.config import config_path

    return config_path(name)


def parse_overrides(items: list[str]) -> dict:
    """``KEY=VALUE`` pairs, values parsed as YAML."""
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise RnonError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        return _run(args)
    except RnonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import torch

    from rnon_engine.train.batches import make_sources
    from rnon_engine.train.config import load_config
    from rnon_engine.train.trainer import Trainer, setup_distributed

    config = load_config(resolve_config_path(args.config), parse_overrides(args.set))
    if args.threads:
        torch.set_num_threads(args.threads)
    dist_info = setup_distributed()
    init = args.init
    if init == "default":
        from rnon_engine.pretrained import default_paths

        init = default_paths()[0]
    elif init is not None and not Path(init).is_file():
        raise RnonError(f"--init: no weights file at {init}; give 'default' or a .safetensors path")
    stages = ["repair", "optimize"] if args.stage == "both" else [args.stage]
    start_step = 0
    if args.continue_from is not None:
        from rnon_engine.nn.weights import read_metadata

        if len(stages) != 1 or init is not None or args.resume:
            raise RnonError("--continue-from needs one --stage and no --init or --resume")
        meta = read_metadata(args.continue_from)
        if meta.get("stage") != args.stage or not isinstance(meta.get("step"), int):
            raise RnonError(
                f"--continue-from: {args.continue_from} is not a stage-{args.stage!r} export "
                "with a step in its metadata"
            )
        init, start_step = args.continue_from, meta["step"]
    start = time.monotonic()
    for stage in stages:
        budget = None
        if args.max_minutes is not None:
            budget = args.max_minutes - (time.monotonic() - start) / 60.0
            if budget <= 0:
                break
        stage_cfg = getattr(config, stage)
        train, val = make_sources(
            config,
            stage_cfg.batch_size,
            args.data,
            args.val,
            dist_info=dist_info,
            exclude_dir=args.exclude,
            exclude_value=args.exclude_value,
        )
        trainer = Trainer(
            config,
            stage,
            args.out,
            train,
            val=val,
            device=args.device,
            repair_weights=args.repair_weights,
            init_weights=init if stage == "repair" or args.continue_from else None,
            init_step=start_step,
            dist_info=dist_info,
        )
        trainer.fit(
            max_steps=args.max_steps,
            max_minutes=budget,
            resume=args.resume and trainer.checkpoint_path.is_file(),
            progress=not args.no_progress,
        )
        if trainer.stop_reason.startswith("signal") or trainer.stop_reason == "time budget":
            break
    if dist_info.world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
