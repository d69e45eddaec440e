"""Fine-tuning: trainable layers, init weights, excluded pixels, the finetune() API, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml

from rnon_engine.errors import Cancelled, ConfigError, InputError, WeightsError
from rnon_engine.inference.intensity import intensity_map
from rnon_engine.nn.registry import create_model
from rnon_engine.nn.weights import load_model, read_metadata, save_weights
from rnon_engine.samples import fluorescence_planes
from rnon_engine.train.batches import FixedBatches, make_sources
from rnon_engine.train.config import (
    CONFIG_DIR,
    config_path,
    config_to_dict,
    load_config,
    read_config,
)
from rnon_engine.train.data import ImageFolderDataset
from rnon_engine.train.finetune import (
    WEIGHTS_DIR_ENV,
    check_exclude,
    finetune,
    finetune_config,
    list_user_weights,
    training_planes,
    user_weights_dir,
    write_training_folder,
)
from rnon_engine.train.losses import build_stage_loss
from rnon_engine.train.trainer import Trainer

# Small and fast: 32-pixel crops, a 4-level network, no feature networks.
TINY = {
    "data.crop_size": 32,
    "data.scale_jitter": [1.0, 1.0],
    "repair.batch_size": 2,
    "log_every": 1,
    "checkpoint_every": 1000,
    "export_every": 1000,
}


@pytest.fixture(scope="module")
def planes() -> np.ndarray:
    return fluorescence_planes(3, (48, 48), seed=5)


@pytest.fixture
def tiny_init(tmp_path) -> Path:
    torch.manual_seed(1)
    model = create_model("rnon-repair", width=0.125, depth=4)
    return save_weights(model, tmp_path / "init.safetensors")


def _write_folder(root: Path, planes: np.ndarray) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(planes):
        tifffile.imwrite(root / f"p{i}.tif", p)
    return root


# ------------------------------------------------------------------------------ config


def test_finetune_config_is_the_packaged_yaml():
    from training.run import resolve_config_path

    path = CONFIG_DIR / "finetune.yaml"
    assert config_path("finetune") == resolve_config_path("finetune") == path
    from_yaml = load_config(path)
    assert config_to_dict(from_yaml) == config_to_dict(finetune_config())
    assert read_config(path)["repair"]["model"] == {}
    assert from_yaml.repair.trainable == ()
    assert from_yaml.repair.loss.adv == 0 and from_yaml.repair.loss.vgg16_weights == "none"


@pytest.mark.parametrize("bad", [[""], [3], "decoder"])
def test_trainable_must_be_a_list_of_patterns(bad):
    with pytest.raises(ConfigError, match="repair.trainable"):
        finetune_config({"repair.trainable": bad})


def test_trainable_pattern_matching_nothing_is_refused(tmp_path, planes, tiny_init):
    cfg = finetune_config({**TINY, "repair.trainable": ["decodr"]})
    train, _ = make_sources(cfg, 2, _write_folder(tmp_path / "d", planes))
    with pytest.raises(ConfigError, match="'decodr' matches no parameter"):
        Trainer(cfg, "repair", tmp_path / "r", train, device="cpu", init_weights=tiny_init)


def test_trainable_layers_train_and_the_rest_stays_frozen(tmp_path, planes, tiny_init):
    cfg = finetune_config({**TINY, "repair.trainable": ["decoder.[23].*", "head"]})
    train, _ = make_sources(cfg, 2, _write_folder(tmp_path / "d", planes))
    tr = Trainer(cfg, "repair", tmp_path / "r", train, device="cpu", init_weights=tiny_init)
    before = {k: v.clone() for k, v in tr.g_raw.state_dict().items()}
    tr.fit(max_steps=3, progress=False)
    after = tr.g_raw.state_dict()
    trained = {k for k in before if not torch.equal(before[k], after[k])}
    for key in before:
        in_scope = key.startswith(("decoder.2.", "decoder.3.", "head."))
        if not in_scope:  # weights, biases and BatchNorm running statistics of frozen layers
            assert key not in trained, key
    assert any(k.startswith("decoder.2.conv") for k in trained)
    assert any(k.startswith("decoder.2.bn.running") for k in trained)  # trainable BN learns
    assert all(
        not p.requires_grad for n, p in tr.g_raw.named_parameters() if n.startswith("encoder")
    )


def test_empty_trainable_trains_everything(tmp_path, planes, tiny_init):
    cfg = finetune_config({**TINY, "repair.trainable": []})
    train, _ = make_sources(cfg, 2, _write_folder(tmp_path / "d", planes))
    tr = Trainer(cfg, "repair", tmp_path / "r", train, device="cpu", init_weights=tiny_init)
    before = {k: v.clone() for k, v in tr.g_raw.named_parameters()}
    tr.fit(max_steps=2, progress=False)
    assert all(
        not torch.equal(before[k], v) for k, v in tr.g_raw.named_parameters() if "bn" not in k
    )


def test_init_weights_decide_the_architecture(tmp_path, planes, tiny_init):
    folder = _write_folder(tmp_path / "d", planes)
    bad = finetune_config({**TINY, "repair.model": {"width": 0.5}})
    train, _ = make_sources(bad, 2, folder)
    with pytest.raises(ConfigError, match=r"repair\.model\.width.*0\.125"):
        Trainer(bad, "repair", tmp_path / "r", train, device="cpu", init_weights=tiny_init)
    agree = finetune_config({**TINY, "repair.model": {"width": 0.125, "depth": 4}})
    tr = Trainer(agree, "repair", tmp_path / "r2", train, device="cpu", init_weights=tiny_init)
    assert tr.g_raw.config.depth == 4


# ------------------------------------------------------------------ excluded pixels


def _excluded_batch(seed: int = 0, size: int = 32):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 3, size, size, generator=g)
    hole = torch.zeros(2, 1, size, size)
    hole[..., 8:20, 6:26] = 1
    target_valid = torch.ones(2, 1, size, size)
    target_valid[..., 10:14, 10:13] = 0  # inside the hole
    target_valid[..., 2, :] = 0  # a dead row touching known pixels
    valid = (1 - hole) * target_valid  # as InpaintingDataset builds it
    return image, valid, target_valid


@pytest.mark.parametrize("poison", [float("nan"), 1e6, -3.0])
def test_excluded_pixels_never_reach_the_loss(poison):
    loss = build_stage_loss(
        "repair",
        finetune_config({"repair.loss.tv": 1.0, "repair.loss.ssim": 1.0}).repair.loss,
    )
    image, valid, tv = _excluded_batch()
    out0 = torch.rand(image.shape, generator=torch.Generator().manual_seed(1))

    def run(target):
        out = out0.clone().requires_grad_(True)
        total, terms = loss(out, target, valid, target_valid=tv)
        total.backward()
        return total.detach(), out.grad, terms

    ref_loss, ref_grad, ref_terms = run(image)
    poisoned = torch.where(tv > 0, image, torch.full_like(image, poison))
    p_loss, p_grad, p_terms = run(poisoned)
    assert torch.isfinite(p_loss) and torch.isfinite(p_grad).all()
    assert torch.equal(ref_loss, p_loss)
    assert torch.equal(ref_grad, p_grad)
    assert set(ref_terms) >= {"valid", "hole", "tv", "ssim"}
    # No gradient reaches the excluded outputs at all.
    assert (ref_grad * (1 - tv)).abs().max() == 0


class _OneBatch:
    batch_size = 2

    def __init__(self, batch):
        self._batch = batch

    def batch(self, step):
        return {k: v.clone() for k, v in self._batch.items()}

    def __len__(self):
        return 1


def test_trainer_step_ignores_excluded_target_values(tmp_path, tiny_init):
    cfg = finetune_config({**TINY, "repair.trainable": []})
    image, valid, tv = _excluded_batch()
    states = []
    for k, poison in enumerate((0.0, 1e6)):
        batch = {
            "image": torch.where(tv > 0, image, torch.full_like(image, poison)),
            "valid": valid,
            "target_valid": tv,
        }
        torch.manual_seed(0)
        tr = Trainer(
            cfg,
            "repair",
            tmp_path / f"r{k}",
            _OneBatch(batch),
            device="cpu",
            init_weights=tiny_init,
        )
        metrics = [tr.train_step(batch) for _ in range(2)]
        states.append((metrics, tr.g_raw.state_dict()))
    (m0, s0), (m1, s1) = states
    assert m0 == m1
    assert all(torch.equal(s0[k], s1[k]) for k in s0)


# ------------------------------------------------------------------------- planes


def test_training_planes_follow_the_inference_rules():
    rng = np.random.default_rng(0)
    u16 = (rng.random((20, 24)) * 3000 + 100).astype(np.uint16)
    ((plane, bad),) = training_planes(u16)
    np.testing.assert_array_equal(plane, intensity_map(u16, ~bad).to_unit(u16))
    assert plane.min() == 0 and plane.max() == 1 and not bad.any()

    stack = np.stack([u16, u16 // 2, u16 // 3])
    assert len(training_planes(stack, channel_axis=None)) == 3
    rgb = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    ((p_rgb, _),) = training_planes(rgb)
    np.testing.assert_allclose(p_rgb, rgb / 255.0, atol=1e-6)
    five = rng.integers(0, 60000, (2, 20, 24, 5), dtype=np.uint16)
    out = training_planes(five, channel_axis=-1)
    assert len(out) == 10 and out[0][0].shape == (20, 24)
    czyx = np.moveaxis(five, -1, 0)  # channel first, then Z: the same planes
    out2 = training_planes(czyx, channel_axis=0)
    for (a, _), (b, _) in zip(out, out2, strict=True):
        np.testing.assert_array_equal(a, b)


def test_training_planes_mark_bad_pixels():
    img = np.full((3, 16, 16), 500, np.uint16)
    img[:, 4, 4] = 4095  # hot pixel: excluded by value, and kept out of the intensity scale
    img[:, 8:10, 8:10] = 1000
    mask = np.zeros((16, 16), bool)
    mask[0, :] = True
    out = training_planes(img, channel_axis=None, exclude=mask, exclude_value=4095)
    for plane, bad in out:
        assert bad[0].all() and bad[4, 4] and bad.sum() == 16 + 1
        assert plane[9, 9] == 1.0  # 1000 is the top of the good pixels, not 4095
    f = np.ones((16, 16), np.float32)
    f[3, 3] = np.nan
    ((_, bad),) = training_planes(f)
    assert bad[3, 3] and bad.sum() == 1
    with pytest.raises(InputError, match="does not match"):
        check_exclude((3, 16, 16), np.zeros((15, 16)), None)
    check_exclude((3, 16, 16), np.zeros((3, 16, 16)), None)
    assert training_planes(np.zeros((8, 8), np.uint16), exclude=np.ones((8, 8))) == []


def test_dataset_maps_16_bit_like_inference(tmp_path):
    img = (np.random.default_rng(1).random((40, 40)) * 2000 + 150).astype(np.uint16)
    img[5, 5] = 0
    tifffile.imwrite(tmp_path / "a.tif", img)
    (tmp_path / "ex").mkdir()
    tifffile.imwrite(tmp_path / "ex" / "a.tif", (img == 0).astype(np.uint8))
    ds = ImageFolderDataset(
        tmp_path, crop_size=40, scale_jitter=None, hflip=False, exclude_dir=tmp_path / "ex"
    )
    sample = ds[0]
    expect = intensity_map(img, img != 0).to_unit(img)
    np.testing.assert_allclose(sample["image"][0].numpy(), expect, atol=1e-6)
    assert sample["valid_target"][0, 5, 5] == 0
    by_value = ImageFolderDataset(
        tmp_path, crop_size=40, scale_jitter=None, hflip=False, exclude_value=0
    )
    np.testing.assert_array_equal(by_value[0]["valid_target"], sample["valid_target"])


def test_write_training_folder_layout(tmp_path):
    stack = fluorescence_planes(2, (24, 24), seed=0)
    mask = np.zeros((24, 24), bool)
    mask[3, 3] = True
    img_dir, ex_dir, n = write_training_folder(
        [stack, stack[0]], tmp_path, channel_axis=[None, None], exclude_masks=[mask, None]
    )
    assert n == 3
    assert sorted(p.name for p in img_dir.iterdir()) == ["00000.tif", "00001.tif", "00002.tif"]
    assert sorted(p.name for p in ex_dir.iterdir()) == ["00000.png", "00001.png"]
    assert tifffile.imread(img_dir / "00000.tif").dtype == np.float32
    with pytest.raises(InputError, match="one per image"):
        write_training_folder([stack], tmp_path / "x", exclude_masks=[None, None])
    with pytest.raises(InputError, match="no images"):
        write_training_folder([], tmp_path / "y")


# ------------------------------------------------------------------------ finetune()


def _fixed_loss(model, folder: Path, cfg) -> float:
    images = ImageFolderDataset(folder, crop_size=32, scale_jitter=None, hflip=False)
    from rnon_engine.train.data import InpaintingDataset

    fixed = FixedBatches(InpaintingDataset(images, (0.1, 0.4)), 4, 32, 8, seed=7)
    loss = build_stage_loss("repair", cfg.repair.loss)
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(len(fixed)):
            b = fixed.batch(i)
            out = model(b["image"] * b["valid"], b["valid"])
            total += float(loss(out, b["image"], b["valid"], target_valid=b["target_valid"])[0])
    return total


def test_short_finetune_lowers_the_loss(tmp_path, planes, tiny_init, monkeypatch):
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path / "weights"))
    overrides = {**TINY, "repair.trainable": [], "repair.optim.lr": 2e-3}
    seen = []
    path = finetune(
        [planes],
        init=tiny_init,
        name="tiny model",
        minutes=None,
        max_steps=25,
        channel_axis=None,
        overrides=overrides,
        device="cpu",
        progress=lambda s, t, loss: seen.append((s, t, loss)),
        run_dir=tmp_path / "run",
    )
    assert path == tmp_path / "weights" / "tiny model.safetensors"
    assert list_user_weights() == [path]
    assert [s for s, _, _ in seen] == list(range(1, 26)) and seen[0][1] == 25
    meta = read_metadata(path)
    assert meta["finetuned_from"] == str(tiny_init) and meta["step"] == 25
    assert meta["config"] == read_metadata(tiny_init)["config"]
    stats = [json.loads(x) for x in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert len(stats) == 25
    # Judge on fixed batches of the training planes (the per-step loss is noisy).
    folder = tmp_path / "eval"
    write_training_folder([planes], folder, channel_axis=None)
    cfg = finetune_config(overrides)
    before = _fixed_loss(load_model(tiny_init), folder / "images", cfg)
    after = _fixed_loss(load_model(path), folder / "images", cfg)
    assert after < 0.9 * before, (before, after)


def test_finetune_errors_and_cancel(tmp_path, planes, tiny_init):
    kw = dict(init=tiny_init, out_dir=tmp_path, channel_axis=None, overrides=TINY, device="cpu")
    with pytest.raises(InputError, match="file name"):
        finetune([planes], name="../evil", **kw)
    with pytest.raises(WeightsError, match="no weights file"):
        finetune([planes], name="a", **{**kw, "init": tmp_path / "missing.safetensors"})
    opt = save_weights(
        create_model("rnon-optimize", width=0.25, blocks=1), tmp_path / "o.safetensors"
    )
    with pytest.raises(WeightsError, match="repair generator"):
        finetune([planes], name="a", **{**kw, "init": opt})
    with pytest.raises(InputError, match="marked bad"):
        finetune([planes[0]], name="a", exclude_masks=[np.ones((48, 48))], **kw)
    calls = []
    with pytest.raises(Cancelled):
        finetune(
            [planes],
            name="c",
            max_steps=50,
            cancel=lambda: calls.append(1) or len(calls) >= 2,
            **kw,
        )
    assert len(calls) == 2 and not (tmp_path / "c.safetensors").exists()
    (tmp_path / "x.safetensors").write_bytes(b"")
    with pytest.raises(InputError, match="exists already"):
        finetune([planes], name="x", **kw)


def test_user_weights_dir(monkeypatch, tmp_path):
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path / "w"))
    assert user_weights_dir() == tmp_path / "w" and not (tmp_path / "w").exists()
    assert user_weights_dir(create=True).is_dir() and list_user_weights() == []
    monkeypatch.delenv(WEIGHTS_DIR_ENV)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert user_weights_dir() == tmp_path / "xdg" / "napari-rnon" / "weights"


# ------------------------------------------------------------------------------ CLI


def test_cli_init_path_exclude_and_value(tmp_path, planes, tiny_init):
    from training.run import main

    data = _write_folder(tmp_path / "data", planes)
    ex = tmp_path / "ex"
    ex.mkdir()
    tifffile.imwrite(ex / "p0.tif", np.eye(48, dtype=np.uint8))
    sets = [f"--set={k}={json.dumps(v)}" for k, v in TINY.items()]
    out = tmp_path / "run"
    argv = ["--config", "finetune", "--data", str(data), "--out", str(out), "--stage", "repair"]
    argv += ["--init", str(tiny_init), "--max-steps", "2", "--no-progress", "--device", "cpu"]
    argv += ["--exclude", str(ex), "--exclude-value", "4095", *sets]
    assert main([*argv, "--set", "repair.trainable=[decoder.3, head]"]) == 0
    weights = out / "weights" / "repair_generator.safetensors"
    meta = read_metadata(weights)
    assert meta["step"] == 2 and meta["config"]["depth"] == 4
    saved = yaml.safe_load((out / "config.yaml").read_text())["repair"]
    assert saved["trainable"] == ["decoder.3", "head"]
    start, end = load_model(tiny_init).state_dict(), load_model(weights).state_dict()
    changed = {k for k in start if not torch.equal(start[k], end[k])}
    assert changed and all(k.startswith(("decoder.3.", "head.")) for k in changed)
    # A missing init file is a clear error (exit code 2), before any training.
    bad = [*argv]
    bad[bad.index("--init") + 1] = str(tmp_path / "nope.safetensors")
    assert main([*bad[: -len(sets)], "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


def test_cli_init_default(tmp_path, planes):
    from training.run import main

    data = _write_folder(tmp_path / "data", planes[:1])
    sets = [f"--set={k}={json.dumps(v)}" for k, v in TINY.items()]
    out = tmp_path / "run"
    argv = ["--config", "finetune", "--data", str(data), "--out", str(out), "--stage", "repair"]
    argv += ["--init", "default", "--max-steps", "1", "--no-progress", "--device", "cpu", *sets]
    assert main(argv) == 0
    from rnon_engine.pretrained import default_paths

    want = read_metadata(default_paths()[0])["config"]
    assert read_metadata(out / "weights" / "repair_generator.safetensors")["config"] == want
