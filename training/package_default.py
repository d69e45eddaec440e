"""Package a training run's generators as the default model shipped with napari-rnon.

``python -m training.package_default --run RUN_DIR [--corpus CORPUS_DIR]`` copies the run's
exported stage-1 and stage-2 generators (``--stage2-only``: stage 2 alone, the shipped
stage 1 kept; ``--stage1-only``: stage 1 alone, the shipped stage 2 kept) into
``src/rnon_engine/pretrained/`` as float16 safetensors (the weights format's ``dtype``
option; they load back as float32), with provenance in their metadata, and copies the
run's config, statistics and change log to ``training/runs/<run name>/`` so the model
card's figures can be traced.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORD_DIR = REPO / "training" / "runs"


def package(
    run: Path, corpus: Path | None = None, stage2_only: bool = False, stage1_only: bool = False
) -> tuple[Path, ...]:
    """Write the default weights from ``run``; returns their paths.

    ``stage2_only``: replace the shipped stage 2 only; the shipped stage-1 file is kept
    as it is (a stage 2 trained on it with ``--repair-weights``). ``stage1_only``: replace
    the shipped stage 1 only, keeping the shipped stage-2 file (a stage 1 that the shipped
    stage 2 was measured with, such as one distilled from the shipped stage 1).
    """
    if stage1_only and stage2_only:
        raise SystemExit("error: give --stage1-only or --stage2-only, not both")
    import torch

    from rnon_engine.nn.weights import EXPORT_NAMES, load_model, save_weights
    from rnon_engine.pretrained import DIRECTORY, OPTIMIZE_FILE, REPAIR_FILE

    if stage2_only:
        stages, what = ("optimize",), "train stage 2 first"
    elif stage1_only:
        stages, what = ("repair",), "train stage 1 first"
    else:
        stages, what = ("repair", "optimize"), "train both stages first"
    for stage in stages:
        path = run / "weights" / EXPORT_NAMES[stage]
        if not path.is_file():
            raise SystemExit(f"error: {path} is missing: {what}")
    common = {
        "description": (
            "napari-rnon default model: trained on the CPU with the packaged cpu-lite config "
            "on the Debian-package corpus (training/corpus.py); see docs/model_card.md"
        ),
        "run": run.name,
        "packaged": datetime.date.today().isoformat(),
    }
    if corpus is not None and (corpus / "manifest.csv").is_file():
        common["corpus_manifest_sha256"] = hashlib.sha256(
            (corpus / "manifest.csv").read_bytes()
        ).hexdigest()
    shipped = {"repair": REPAIR_FILE, "optimize": OPTIMIZE_FILE}
    # The shipped stage 1 names its stage 2 beside it (Inpainter.from_pretrained).
    extra = {"repair": {"stage2_file": OPTIMIZE_FILE}, "optimize": {}}
    written: list[Path] = []
    for stage in stages:
        model = load_model(run / "weights" / EXPORT_NAMES[stage])
        written.append(
            save_weights(
                model,
                DIRECTORY / shipped[stage],
                dtype=torch.float16,
                stage=stage,
                step=model.metadata.get("step"),
                train_config=model.metadata.get("train_config"),
                **extra[stage],
                **common,
            )
        )
    record = RECORD_DIR / run.name
    record.mkdir(parents=True, exist_ok=True)
    for name in ("config.yaml", "stats.jsonl", "CHANGES.txt"):
        if (run / name).is_file():
            shutil.copy2(run / name, record / name)
    return tuple(written)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m training.package_default", description=__doc__)
    parser.add_argument("--run", type=Path, required=True, help="training run directory")
    parser.add_argument("--corpus", type=Path, help="corpus folder (its manifest hash is recorded)")
    parser.add_argument(
        "--stage2-only",
        action="store_true",
        help="replace the shipped stage 2 only, keeping the shipped stage-1 file",
    )
    parser.add_argument(
        "--stage1-only",
        action="store_true",
        help="replace the shipped stage 1 only, keeping the shipped stage-2 file",
    )
    args = parser.parse_args(argv)
    packaged = package(
        args.run, args.corpus, stage2_only=args.stage2_only, stage1_only=args.stage1_only
    )
    for path in packaged:
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
