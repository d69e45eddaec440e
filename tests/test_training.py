"""The two-stage trainer: config validation, learning, checkpoints, resume, DDP, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage import io

from rnon_engine import load_model
from rnon_engine.errors import ConfigError
from rnon_engine.train.batches import make_sources
from rnon_engine.train.config import (
    CONFIG_DIR,
    config_from_dict,
    config_path,
    config_to_dict,
    load_config,
)
from rnon_engine.train.trainer import DistInfo, Trainer

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "name": "tiny",
    "seed": 3,
    "data": {"crop_size": 32, "scale_jitter": [0.5, 1.0], "mask_ratio": [0.1, 0.4]},
    "repair": {
        "model": {"width": 0.125, "depth": 4},
        "disc": {"width": 0.125, "blocks": 4, "dense": 16},
        "loss": {
            "per": 0.0,
            "style": 0.0,
            "adv": 0.0,
            "vgg16_weights": "none",
            "densenet_weights": "none",
        },
        "optim": {"lr": 1e-3},
        "batch_size": 4,
        "steps": 6,
    },
    "optimize": {
        "model": {"width": 0.25, "blocks": 2},
        "disc": {"width": 0.125, "blocks": 4, "dense": 16},
        "loss": {
            "per": 0.0,
            "adv": 0.0,
            "hole": 6.0,
            "vgg19_weights": "none",
            "densenet_weights": "none",
        },
        "optim": {"lr": 1e-3},
        "batch_size": 4,
        "steps": 4,
    },
    "checkpoint_every": 2,
    "log_every": 1,
    "image_every": 3,
    "export_every": 3,
}


def _config(**changes):
    raw = json.loads(json.dumps(TINY))
    for dotted, value in changes.items():
        node = raw
        *parents, last = dotted.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return config_from_dict(raw)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    (root / "photos").mkdir()
    (root / "gray").mkdir()
    io.imsave(root / "photos" / "astronaut.png", skdata.astronaut()[::4, ::4], check_contrast=False)
    io.imsave(root / "photos" / "coffee.png", skdata.coffee()[::4, ::4], check_contrast=False)
    io.imsave(root / "gray" / "camera.png", skdata.camera()[::4, ::4], check_contrast=False)
    return root


def _trainer(config, stage, out, image_dir, **kw):
    sc = getattr(config, stage)
    train, val = make_sources(config, sc.batch_size, image_dir, kw.pop("val", None))
    return Trainer(config, stage, out, train, val=val, device="cpu", **kw)


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize("name", ["paper", "cpu-lite", "finetune"])
def test_packaged_configs_load_and_round_trip(name):
    cfg = load_config(CONFIG_DIR / f"{name}.yaml")
    assert cfg.name == name
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_config_names_resolve_to_the_packaged_files(tmp_path):
    from training.run import resolve_config_path

    assert CONFIG_DIR.parent.name == "train" and CONFIG_DIR.parent.parent.name == "rnon_engine"
    for name in ("paper", "cpu-lite", "finetune"):
        assert resolve_config_path(name) == config_path(name) == CONFIG_DIR / f"{name}.yaml"
    own = tmp_path / "paper"  # a file path wins over a packaged name
    own.write_text("name: mine\n")
    assert resolve_config_path(str(own)) == own
    with pytest.raises(ConfigError, match=r"no-such-config.*cpu-lite, finetune, paper"):
        resolve_config_path("no-such-config")


def test_paper_config_has_the_papers_numbers():
    cfg = load_config(CONFIG_DIR / "paper.yaml")
    lw = cfg.repair.loss
    assert (lw.valid, lw.hole, lw.per, lw.style, lw.adv, lw.tv) == (
        2.0,
        12.0,
        0.04,
        100.0,
        100.0,
        0.3,
    )
    assert (lw.vgg_mix, lw.densenet_mix, lw.adv_mode) == (1.0, 30.0, "bce")
    assert lw.vgg16_layers == ("pool1", "pool2", "pool3")
    assert lw.densenet_layers == ("conv0", "pool2", "pool3")
    ow = cfg.optimize.loss
    assert (ow.con, ow.per, ow.adv, ow.hole) == (40.0, 1.0, 0.75, 0.0)
    assert (ow.vgg_mix, ow.densenet_mix) == (1.25, 50.0)
    assert ow.vgg19_layers == ("block3_conv4",) and ow.densenet_layers == ("pool2",)
    assert cfg.repair.optim.lr == 2e-4 and cfg.repair.optim.betas == (0.5, 0.999)
    assert cfg.repair.optim.weight_decay == 1e-7
    assert cfg.repair.batch_size == 4 and cfg.repair.steps == 100_000
    assert cfg.repair.model == {"width": 1.0, "depth": 8, "pad_mode": "hole", "prefill": "none"}


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"nope": 1}, "unknown config key(s) ['nope']"),
        ({"repair": {"loss": {"hol": 1.0}}}, "['hol'] in 'repair.loss'"),
        ({"repair": {"loss": {"hole": -1.0}}}, "'repair.loss': loss weight hole"),
        ({"data": {"crop_size": "big"}}, "data.crop_size"),
        ({"data": {"mask_ratio": [0.5, 0.2]}}, "data.mask_ratio"),
        ({"repair": {"model": {"widht": 1.0}}}, "widht"),
        ({"repair": {"model": {"width": -1.0}}}, "width"),
        ({"optimize": {"loss": {"valid": 1.0}}}, "'optimize.loss'"),
        ({"repair": {"loss": {"vgg16_weights": "vgg"}}}, "repair.loss.vgg16_weights"),
        ({"repair": {"loss": {"adv_mode": "wgan"}}}, "adv_mode"),
        ({"repair": {"loss": {"vgg16_layers": ["pool9"]}}}, "pool9"),
        ({"repair": {"batch_size": 0}}, "batch_size"),
        ({"amp": "yes"}, "amp"),
        ({"repair": {"optim": {"lr": -1}}}, "config key 'repair.optim.lr': must be > 0"),
        ({"optimize": {"optim": {"betas": [1.5, 0.9]}}}, "config key 'optimize.optim.betas'"),
        ({"repair": {"optim": {"schedule": "linear"}}}, "'repair.optim.schedule'"),
        ({"repair": {"optim": {"schedule": "cosine"}}}, "'repair.optim.decay_steps'"),
        ({"repair": {"optim": {"lr": 1e-3, "min_lr": 1e-2}}}, "'repair.optim.min_lr'"),
        ({"repair": {"ema": 1.0}}, "'repair.ema'"),
    ],
)
def test_bad_config_is_refused_naming_the_key(raw, fragment):
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    assert fragment in str(err.value)


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("repair: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("repiar: {}\n")
    with pytest.raises(ConfigError, match=r"typo.yaml.*repiar"):
        load_config(typo)


def test_crop_schedule_reaches_the_batches(image_dir):
    cfg = _config(**{"data.crop_size": 96, "data.crop_schedule": [[0, 32], [10, 64]]})
    train, _ = make_sources(cfg, 2, image_dir, None)
    sizes = [train.batch(s)["image"].shape[-1] for s in (0, 9, 10, 1000)]
    assert sizes == [32, 32, 64, 64]


# --------------------------------------------------------------------------- learning
def test_tiny_config_overfits_a_fixed_batch(image_dir, tmp_path):
    torch.manual_seed(0)
    cfg = _config()
    tr = _trainer(cfg, "repair", tmp_path, image_dir)
    batch = tr.data.batch(0)
    losses = [tr.train_step(batch)["g/total"] for _ in range(60)]
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])


def test_adversarial_and_feature_terms_run(image_dir, tmp_path):
    cfg = _config(
        **{
            "repair.loss.adv": 1.0,
            "repair.loss.per": 0.04,
            "repair.loss.style": 1.0,
            "repair.loss.vgg16_weights": "random",
            "repair.loss.densenet_weights": "random",
        }
    )
    tr = _trainer(cfg, "repair", tmp_path, image_dir)
    d_before = [p.detach().clone() for p in tr.d_raw.parameters()]
    m = tr.train_step(tr.data.batch(0))
    for key in ("g/adv", "g/per", "d/total"):
        assert any(k.startswith(key) for k in m), (key, sorted(m))
    assert all(np.isfinite(v) for v in m.values())
    assert any(not torch.equal(a, b) for a, b in zip(d_before, tr.d_raw.parameters(), strict=True))


# --------------------------------------------------------------------------- run dir, resume
def test_run_directory_contents(image_dir, tmp_path):
    cfg = _config()
    tr = _trainer(cfg, "repair", tmp_path / "run", image_dir, val=image_dir)
    assert tr.fit(progress=False) == 6
    run = tmp_path / "run"
    assert (run / "config.yaml").is_file()
    assert load_config(run / "config.yaml") == cfg
    lines = [json.loads(s) for s in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4, 5, 6]
    assert {"g/total", "g/valid", "g/hole", "g/tv"} <= set(lines[0])
    assert any("val/psnr" in r for r in lines)
    assert sorted(p.name for p in (run / "images").iterdir()) == [
        "repair_0000003.png",
        "repair_0000006.png",
    ]
    assert list((run / "tb").iterdir())
    model = load_model(run / "weights" / "repair_generator.safetensors")
    assert model.metadata["step"] == 6 and model.metadata["stage"] == "repair"
    assert (run / "checkpoints" / "repair_last.pt").is_file()


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resume_equals_uninterrupted(image_dir, tmp_path):
    cfg = _config(**{"data.crop_schedule": [[0, 32], [4, 48]]})
    straight = _trainer(cfg, "repair", tmp_path / "a", image_dir)
    straight.fit(max_steps=6, progress=False)

    first = _trainer(cfg, "repair", tmp_path / "b", image_dir)
    first.fit(max_steps=3, progress=False)
    second = _trainer(cfg, "repair", tmp_path / "b", image_dir)
    second.fit(max_steps=6, resume=True, progress=False)

    assert second.step == 6
    a, b = _state(straight.g_raw), _state(second.g_raw)
    assert all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = straight.opt_g.state_dict()["state"], second.opt_g.state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)


def test_lr_schedule_values():
    cfg = _config(
        **{
            "repair.optim": {
                "lr": 1e-3,
                "schedule": "cosine",
                "warmup_steps": 4,
                "decay_start": 10,
                "decay_steps": 20,
                "min_lr": 1e-4,
            }
        }
    ).repair.optim
    lrs = [cfg.lr * cfg.lr_factor(s) for s in range(40)]
    assert lrs[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])  # warm-up
    assert lrs[4:11] == pytest.approx([1e-3] * 7)  # constant until decay_start
    assert lrs[20] == pytest.approx(1e-4 + 0.9e-3 * 0.5)  # half way down the cosine
    assert lrs[30:] == pytest.approx([1e-4] * 10)  # min_lr after decay_steps
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert _config().repair.optim.lr_factor(123) == 1.0  # constant: the paper's schedule


def test_schedule_reaches_the_optimisers(image_dir, tmp_path):
    optim = {"lr": 1e-3, "schedule": "cosine", "decay_steps": 4, "min_lr": 1e-5}
    trainer = _trainer(_config(**{"repair.optim": optim}), "repair", tmp_path, image_dir)
    trainer.fit(max_steps=6, progress=False)
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-5)
    assert trainer.opt_d.param_groups[0]["lr"] == pytest.approx(1e-5)


def test_ema_is_exported_and_resumes(image_dir, tmp_path):
    cfg = _config(**{"repair.ema": 0.5})
    straight = _trainer(cfg, "repair", tmp_path / "a", image_dir)
    start = _state(straight.g_raw)
    straight.fit(max_steps=6, progress=False)
    raw, avg = _state(straight.g_raw), _state(straight.g_eval)
    weight = "encoder.0.conv.weight" if "encoder.0.conv.weight" in raw else next(iter(raw))
    # The average lies strictly between the start and the last weights (decay 0.5, 6 steps).
    assert not torch.equal(avg[weight], raw[weight])
    assert not torch.equal(avg[weight], start[weight])
    exported = _state(load_model(straight.export_path))
    assert all(torch.equal(exported[k], avg[k]) for k in exported)
    # Resume restores the average too: interrupted == uninterrupted.
    first = _trainer(cfg, "repair", tmp_path / "b", image_dir)
    first.fit(max_steps=3, progress=False)
    second = _trainer(cfg, "repair", tmp_path / "b", image_dir)
    second.fit(max_steps=6, resume=True, progress=False)
    again = _state(second.g_eval)
    assert all(torch.equal(again[k], avg[k]) for k in avg)


def test_resume_without_checkpoint_is_an_error(image_dir, tmp_path):
    tr = _trainer(_config(), "repair", tmp_path, image_dir)
    with pytest.raises(ConfigError, match="no checkpoint"):
        tr.fit(resume=True, progress=False)


def test_max_minutes_stops_with_a_checkpoint(image_dir, tmp_path):
    tr = _trainer(_config(), "repair", tmp_path, image_dir)
    assert tr.fit(max_minutes=0.0, progress=False) == 1
    assert tr.stop_reason == "time budget"
    assert (tmp_path / "checkpoints" / "repair_last.pt").is_file()
    assert (tmp_path / "weights" / "repair_generator.safetensors").is_file()


def test_checkpoint_loads_with_weights_only(image_dir, tmp_path):
    tr = _trainer(_config(), "repair", tmp_path, image_dir)
    tr.fit(max_steps=2, progress=False)
    state = torch.load(tr.checkpoint_path, weights_only=True)
    assert state["step"] == 2 and state["stage"] == "repair"


def test_stage2_needs_stage1_then_trains_on_it(image_dir, tmp_path):
    cfg = _config()
    with pytest.raises(ConfigError, match="train stage 1 first"):
        _trainer(cfg, "optimize", tmp_path, image_dir)
    _trainer(cfg, "repair", tmp_path, image_dir).fit(max_steps=2, progress=False)
    tr = _trainer(cfg, "optimize", tmp_path, image_dir)
    frozen = _state(tr.repair_frozen)
    tr.fit(progress=False)
    assert all(torch.equal(frozen[k], v) for k, v in tr.repair_frozen.state_dict().items())
    model = load_model(tmp_path / "weights" / "optimize_generator.safetensors")
    assert model.model_name == "rnon-optimize"
    assert model.metadata["repair_weights"].endswith("repair_generator.safetensors")


def test_init_weights_fine_tune_start(image_dir, tmp_path):
    cfg = _config()
    _trainer(cfg, "repair", tmp_path / "base", image_dir).fit(max_steps=2, progress=False)
    init = tmp_path / "base" / "weights" / "repair_generator.safetensors"
    tr = _trainer(cfg, "repair", tmp_path / "ft", image_dir, init_weights=init)
    start = load_model(init).state_dict()
    assert all(torch.equal(start[k], v) for k, v in tr.g_raw.state_dict().items())
    with pytest.raises(ConfigError, match="rnon-repair"):
        _trainer(cfg, "optimize", tmp_path / "x", image_dir, init_weights=init, repair_weights=init)


def test_distillation_mixes_the_teachers_output_into_the_hole_target(image_dir, tmp_path):
    cfg = _config()
    _trainer(cfg, "repair", tmp_path / "t", image_dir).fit(max_steps=2, progress=False)
    teacher = tmp_path / "t" / "weights" / "repair_generator.safetensors"
    cfg = _config(**{"repair.teacher": str(teacher), "repair.distill": 0.25})
    tr = _trainer(cfg, "repair", tmp_path / "s", image_dir)
    batch = tr.data.batch(0)
    image, valid = batch["image"], batch["valid"]
    args, _ = tr._inputs(image, valid)
    target = tr._target(image, valid, args)
    with torch.no_grad():
        taught = load_model(teacher).eval()(*args)
    hole = valid.expand_as(image) < 0.5
    assert hole.any() and (~hole).any()
    assert torch.equal(target[~hole], image[~hole])  # the known pixels' target: the truth
    mixed = 0.75 * image + 0.25 * taught
    torch.testing.assert_close(target[hole], mixed[hole])
    assert not torch.allclose(target[hole], image[hole])
    tr.fit(progress=False)  # trains with it


def test_distillation_stage2_teacher_and_config_errors(image_dir, tmp_path):
    cfg = _config()
    _trainer(cfg, "repair", tmp_path, image_dir).fit(max_steps=2, progress=False)
    _trainer(cfg, "optimize", tmp_path, image_dir).fit(max_steps=2, progress=False)
    stage2 = tmp_path / "weights" / "optimize_generator.safetensors"
    stage1 = tmp_path / "weights" / "repair_generator.safetensors"
    cfg = _config(**{"optimize.teacher": str(stage2), "optimize.distill": 1.0})
    tr = _trainer(cfg, "optimize", tmp_path / "s", image_dir, repair_weights=stage1)
    batch = tr.data.batch(0)
    args, _ = tr._inputs(batch["image"], batch["valid"])
    with torch.no_grad():
        taught = load_model(stage2).eval()(*args)
    hole = batch["valid"].expand_as(batch["image"]) < 0.5
    torch.testing.assert_close(tr._target(batch["image"], batch["valid"], args)[hole], taught[hole])
    with pytest.raises(ConfigError, match="'optimize.teacher': distill > 0 needs"):
        _config(**{"optimize.distill": 0.5})
    with pytest.raises(ConfigError, match="'optimize.teacher': must be an existing"):
        _config(**{"optimize.teacher": str(tmp_path / "missing.safetensors")})
    with pytest.raises(ConfigError, match="'optimize.distill'"):
        _config(**{"optimize.teacher": str(stage2), "optimize.distill": 1.5})
    wrong = _config(**{"optimize.teacher": str(stage1), "optimize.distill": 0.5})
    with pytest.raises(ConfigError, match="optimize.teacher is a 'rnon-repair' model"):
        _trainer(wrong, "optimize", tmp_path / "w", image_dir, repair_weights=stage1)


# --------------------------------------------------------------------------- DDP
def _ddp_worker(rank, world, port, image_dir, out, result_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    cfg = _config(**{"repair.model.depth": 1})
    train, _ = make_sources(
        cfg, cfg.repair.batch_size, image_dir, dist_info=DistInfo(rank, world, rank)
    )
    tr = Trainer(cfg, "repair", out, train, device="cpu", dist_info=DistInfo(rank, world, rank))
    tr.fit(max_steps=3, progress=False)
    torch.save(tr.g_raw.state_dict(), Path(result_dir) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_processes_gloo(image_dir, tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(2, port, str(image_dir), str(out), str(tmp_path)), nprocs=2)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    # Parameters stay identical across ranks.
    params = list(r0)
    assert all(torch.equal(r0[k], r1[k]) for k in params)
    # Only rank 0 wrote the run directory; its weights are rank 0's.
    lines = (out / "stats.jsonl").read_text().splitlines()
    assert [json.loads(s)["step"] for s in lines] == [1, 2, 3]
    exported = load_model(out / "weights" / "repair_generator.safetensors").state_dict()
    assert all(torch.equal(exported[k], r0[k].float()) for k in params)
    # The same result as one process on the same global batches. Depth 1 has no
    # BatchNorm (whose statistics DDP keeps per process on the CPU), so the averaged
    # gradients equal the single-process ones up to summation order.
    cfg = _config(**{"repair.model.depth": 1})
    single = _trainer(cfg, "repair", tmp_path / "single", image_dir)
    start = _state(single.g_raw)
    single.fit(max_steps=3, progress=False)
    s = single.g_raw.state_dict()
    assert any(not torch.equal(s[k], start[k]) for k in params)
    for k in params:
        torch.testing.assert_close(r0[k], s[k], rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- CLI
CLI = [sys.executable, "-m", "training.run"]


def _cli_env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1")


def _cli(*args, **kw):
    return subprocess.run(
        [*CLI, *args], cwd=REPO, env=_cli_env(), capture_output=True, text=True, **kw
    )


@pytest.fixture
def tiny_args(tmp_path, image_dir):
    """``tiny_args(out, *extra, data=None)``: CLI arguments for TINY on ``image_dir``."""
    import yaml

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))

    def args(out: Path, *extra: str, data: Path | None = None) -> list[str]:
        data = image_dir if data is None else data
        return ["--config", str(cfg), "--data", str(data), "--out", str(out), *extra]

    return args


def test_cli_both_stages_and_resume(tiny_args, tmp_path):
    out = tmp_path / "run"
    r = _cli(*tiny_args(out, "--no-progress", "--max-steps", "2"))
    assert r.returncode == 0, r.stderr
    assert (out / "weights" / "repair_generator.safetensors").is_file()
    assert (out / "weights" / "optimize_generator.safetensors").is_file()
    r = _cli(*tiny_args(out, "--no-progress", "--resume", "--stage", "repair"))
    assert r.returncode == 0, r.stderr
    steps = [
        json.loads(s)["step"]
        for s in (out / "stats.jsonl").read_text().splitlines()
        if json.loads(s)["stage"] == "repair"
    ]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_cli_continue_from_exported_weights(tiny_args, tmp_path):
    first = tmp_path / "first"
    r = _cli(*tiny_args(first, "--no-progress", "--stage", "repair", "--max-steps", "2"))
    assert r.returncode == 0, r.stderr
    exported = first / "weights" / "repair_generator.safetensors"
    fresh = tmp_path / "fresh"  # a new machine: no checkpoint, only the exported weights
    r = _cli(
        *tiny_args(
            fresh,
            "--no-progress",
            "--stage",
            "repair",
            "--continue-from",
            str(exported),
            "--max-steps",
            "4",
        )
    )
    assert r.returncode == 0, r.stderr
    steps = [json.loads(s)["step"] for s in (fresh / "stats.jsonl").read_text().splitlines()]
    assert steps == [3, 4]
    assert load_model(fresh / "weights" / "repair_generator.safetensors").metadata["step"] == 4
    r = _cli(
        *tiny_args(fresh, "--no-progress", "--stage", "optimize", "--continue-from", str(exported))
    )
    assert r.returncode == 2 and "stage-'optimize'" in r.stderr


def test_cli_errors_are_clear(image_dir, tiny_args, tmp_path):
    r = _cli("--config", "no-such-config", "--data", str(image_dir), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "no-such-config" in r.stderr and "cpu-lite" in r.stderr
    r = _cli(*tiny_args(tmp_path / "o", data=tmp_path / "empty"))
    assert r.returncode == 2 and "empty" in r.stderr
    r = _cli(*tiny_args(tmp_path / "o", "--set", "repair.loss.hole=-3"))
    assert r.returncode == 2 and "repair.loss" in r.stderr and "hole" in r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_cli_sigterm_stops_cleanly_with_checkpoint(tiny_args, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [*CLI, *tiny_args(out, "--stage", "repair", "--no-progress", "--max-steps", "100000")],
        cwd=REPO,
        env=_cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "stats.jsonl").exists():
        time.sleep(0.2)
    assert (out / "stats.jsonl").exists(), proc.communicate(timeout=5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    state = torch.load(out / "checkpoints" / "repair_last.pt", weights_only=True)
    assert 1 <= state["step"] < 100000
    assert (
        load_model(out / "weights" / "repair_generator.safetensors").metadata["step"]
        == state["step"]
    )
