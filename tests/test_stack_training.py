"""Stack-model training data (rnon_engine.train.stacks) and its resumable loop."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from rnon_engine.errors import ConfigError
from rnon_engine.nn.networks.stack import stack_channels
from rnon_engine.nn.weights import load_model
from rnon_engine.train.stack_training import StackTrainConfig, train_stack
from rnon_engine.train.stacks import (
    BENCH_REGIMES,
    EXTRA_REGIMES,
    TRAIN_MIX,
    benchmark_stack,
    training_sample,
)


def _picture(seed: int, side: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    im = cv2.GaussianBlur(rng.random((side, side)).astype(np.float32), (0, 0), 3)
    return (im - im.min()) / (im.max() - im.min())


def test_training_sample_shapes_and_scored_pixels() -> None:
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(12):
        s = training_sample(_picture(1), _picture(2), rng, crop=40)
        seen.add(s.regime)
        assert s.x.shape == (stack_channels(2), 40, 40) and s.target.shape == (40, 40)
        hole = s.x[5] == 0  # the middle plane's known mask
        assert not s.weight[~hole].any()  # only hole pixels are scored
        assert s.x.dtype == np.float32 and np.isfinite(s.x).all()
        assert 0 <= s.target.min() and s.target.max() <= 1
    assert seen <= set(TRAIN_MIX) and len(seen) >= 3


@pytest.mark.parametrize("regime", BENCH_REGIMES + EXTRA_REGIMES)
def test_benchmark_stack_keeps_the_middle_plane(regime: str) -> None:
    pic = _picture(3, 64)
    noisy, clean = benchmark_stack(pic, regime, 2, np.random.default_rng(0), _picture(4, 64))
    assert noisy.shape == clean.shape == (5, 64, 64)
    ratio = (clean[2] / np.maximum(pic, 1e-6))[(pic > 0.05) & (pic < 0.9)]  # not clipped
    assert np.allclose(ratio, np.median(ratio), atol=1e-4)  # the picture times its drift
    inside = (clean[2] > 0.05) & (clean[2] < 0.95)  # noise not clipped
    assert (noisy[2] - clean[2])[inside].std() == pytest.approx(0.01, rel=0.1)
    if regime.startswith("e"):  # the planes before show the other picture
        assert np.corrcoef(noisy[0].ravel(), _picture(4, 64).ravel())[0, 1] > 0.9


def _corpus(root: Path) -> Path:
    pics = []
    for i, (split, kind) in enumerate(
        [("train", "photo"), ("train", "photo"), ("train", "telescope"), ("val", "art")]
    ):
        rel = f"{split}/p{i}.png"
        (root / split).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), (_picture(i, 80) * 255).astype(np.uint8))
        pics.append({"split": split, "kind": kind, "written": rel})
    (root / "manifest.json").write_text(json.dumps({"pictures": pics}))
    return root


def test_train_resume_and_export(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    cfg = StackTrainConfig(
        steps=2, batch_size=2, crop=32, side=64, width=8, val_samples=2, val_every=2,
        log_every=1, warmup=1,
    )
    w = train_stack(corpus, run, cfg, log=lambda s: None)
    first = load_model(w)
    assert first.model_name == "rnon-repair-stack" and first.metadata["step"] == 2
    with pytest.raises(ConfigError, match="--resume"):
        train_stack(corpus, run, cfg, log=lambda s: None)
    w = train_stack(
        corpus, run, StackTrainConfig(**{**vars(cfg), "steps": 3}), resume=True,
        log=lambda s: None,
    )
    assert load_model(w).metadata["step"] == 3
    lines = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "loss_l1" in x] == [1, 2, 3]
    assert any("val_psnr" in x for x in lines)
    assert json.loads((run / "config.json").read_text())["width"] == 8
    with pytest.raises(ConfigError, match="no checkpoint"):
        train_stack(corpus, tmp_path / "empty", cfg, resume=True, log=lambda s: None)
