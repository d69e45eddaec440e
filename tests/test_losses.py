"""Tests of rnon_engine.train.losses and .features (random-init feature nets, 64² images)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from rnon_engine.errors import ConfigError, InputError, WeightsError
from rnon_engine.train.features import (
    FEATURE_LAYERS,
    FeatureWeightsWarning,
    build_feature_extractor,
    imagenet_weights_file,
)
from rnon_engine.train.loss_terms import (
    composite,
    content_loss,
    discriminator_loss,
    eq9_adversarial_loss,
    generator_adversarial_loss,
    gram_matrix,
    hole_loss,
    hole_region,
    perceptual_loss,
    ssim,
    ssim_loss,
    style_loss,
    total_variation_loss,
    valid_loss,
)
from rnon_engine.train.losses import (
    OptimizeLoss,
    OptimizeLossWeights,
    RepairLoss,
    RepairLossWeights,
    StageLoss,
)

KINDS = ("vgg16", "vgg19", "densenet121")


def _random_net(kind, layers=None, seed=0):
    with pytest.warns(FeatureWeightsWarning, match="not meaningful"):
        return build_feature_extractor(kind, "random", layers, seed=seed)


@pytest.fixture(scope="module")
def nets():
    """One random-init extractor per network, tapping every named layer."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FeatureWeightsWarning)
        return {k: build_feature_extractor(k, "random", list(FEATURE_LAYERS[k])) for k in KINDS}


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    out = torch.rand(2, 3, 64, 64, generator=g)
    real = torch.rand(2, 3, 64, 64, generator=g)
    mask = torch.ones(2, 1, 64, 64)
    mask[:, :, 16:40, 8:30] = 0
    return out, real, mask


def _random_weights(cls, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FeatureWeightsWarning)
        return cls(cls_weights(cls, **kw))


def cls_weights(cls, **kw):
    if cls is RepairLoss:
        base = dict(vgg16_weights="random", densenet_weights="random")
        return RepairLossWeights(**{**base, **kw})
    base = dict(vgg19_weights="random", densenet_weights="random")
    return OptimizeLossWeights(**{**base, **kw})


# ------------------------------------------------------------------ pixel terms


def test_valid_and_hole_hand_computed():
    out = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    real = torch.zeros(1, 1, 2, 2)
    mask = torch.tensor([[1.0, 1.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    assert valid_loss(out, real, mask).item() == pytest.approx((1 + 2 + 4) / 4)
    assert hole_loss(out, real, mask).item() == pytest.approx(3 / 4)
    assert content_loss(out, real, mask).item() == pytest.approx((1 + 2 + 4) / 4)


def test_single_channel_mask_broadcasts_like_a_full_mask(batch):
    out, real, mask = batch
    full = mask.expand(-1, 3, -1, -1).clone()
    for fn in (valid_loss, hole_loss):
        assert torch.equal(fn(out, real, mask), fn(out, real, full))
    assert torch.equal(total_variation_loss(out, mask), total_variation_loss(out, full))


def test_all_valid_mask_gives_zero_hole_and_tv(batch):
    out, real, _ = batch
    ones = torch.ones(2, 1, 64, 64)
    assert hole_loss(out, real, ones).item() == 0.0
    assert total_variation_loss(out, ones).item() == 0.0
    assert valid_loss(out, real, ones).item() == pytest.approx((out - real).abs().mean().item())


def test_composite_takes_known_pixels_from_target(batch):
    out, real, mask = batch
    com = composite(out, real, mask)
    m = mask.bool().expand_as(out)
    assert torch.equal(com[m], real[m])
    assert torch.equal(com[~m], out[~m])


def test_tv_constant_image_is_zero(batch):
    _, _, mask = batch
    assert total_variation_loss(torch.full((2, 3, 64, 64), 0.7), mask).item() == 0.0


def test_tv_hand_computed_on_dilated_hole():
    image = torch.arange(12, dtype=torch.float32).view(1, 1, 3, 4)
    mask = torch.ones(1, 1, 3, 4)
    mask[0, 0, 0, 0] = 0  # one hole pixel -> dilated region rows 0-1, cols 0-1
    region = hole_region(mask)[0, 0]
    assert region.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]
    # two horizontal pairs of difference 1, two vertical pairs of difference 4; / 12 elements
    assert total_variation_loss(image, mask).item() == pytest.approx((2 * 1 + 2 * 4) / 12)


# ------------------------------------------------------------------ SSIM


def test_ssim_matches_skimage():
    rng = np.random.default_rng(0)
    a = rng.random((2, 3, 32, 40)).astype(np.float32)
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    ref = np.mean(
        [
            structural_similarity(
                a[i].transpose(1, 2, 0),
                b[i].transpose(1, 2, 0),
                channel_axis=-1,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1.0,
            )
            for i in range(2)
        ]
    )
    got = ssim(torch.from_numpy(a), torch.from_numpy(b)).item()
    assert got == pytest.approx(ref, abs=1e-5)
    assert ssim_loss(torch.from_numpy(a), torch.from_numpy(a)).item() == pytest.approx(0, abs=1e-6)


# ------------------------------------------------------------------ feature terms


def test_gram_matrix_hand_computed():
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]]]).unsqueeze(0)
    # F = [[1,2,3,4],[0,1,1,0]]: F F^T = [[30,5],[5,2]], / (C*H*W = 8)
    expected = torch.tensor([[30.0, 5.0], [5.0, 2.0]]) / 8
    assert torch.allclose(gram_matrix(x)[0], expected)


def test_perceptual_and_style_hand_computed():
    zeros = [torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 2, 2)]
    ones = [torch.ones_like(f) for f in zeros]
    twos = [2 * torch.ones_like(f) for f in zeros]
    # per layer: mean|1-0| + mean|2-0| = 3; two layers
    assert perceptual_loss(ones, twos, zeros).item() == pytest.approx(6.0)
    # Gram of an all-ones map [C,HW] is HW/(C*H*W) = 1/C everywhere: layers give 1/2 and 1/3
    assert style_loss(ones, zeros).item() == pytest.approx(1 / 2 + 1 / 3)


def test_identical_images_give_zero_perceptual_and_style(nets, batch):
    _, real, _ = batch
    for net in nets.values():
        f = net(real)
        assert perceptual_loss(f, f, f).item() == 0.0
        assert style_loss(f, f).item() == 0.0


# ------------------------------------------------------------------ adversarial


def test_bce_generator_and_discriminator_hand_computed():
    fake = torch.tensor([[0.0], [math.log(3)]])
    # softplus(-0) = ln 2, softplus(-ln 3) = ln(4/3)
    expected_g = (math.log(2) + math.log(4 / 3)) / 2
    assert generator_adversarial_loss(fake).item() == pytest.approx(expected_g)
    real = torch.tensor([[0.0]])
    loss, metrics = discriminator_loss(real, torch.tensor([[math.log(3)]]))
    # BCE(0 -> 1) = ln 2, BCE(ln 3 -> 0) = softplus(ln 3) = ln 4
    assert loss.item() == pytest.approx(math.log(8))
    assert metrics["d_real"] == pytest.approx(math.log(2))
    assert metrics["d_fake"] == pytest.approx(math.log(4))
    assert metrics["d_total"] == pytest.approx(math.log(8))
    assert metrics["d_real_prob"] == pytest.approx(0.5)
    assert metrics["d_fake_prob"] == pytest.approx(0.75)


def test_eq9_variant_hand_computed_and_real_side_detached():
    fake = torch.tensor([[0.0], [math.log(3)]], requires_grad=True)  # probs 0.5, 0.75
    real = torch.tensor([[math.log(3)], [0.0]], requires_grad=True)  # probs 0.75, 0.5
    loss = eq9_adversarial_loss(fake, real)
    assert loss.item() == pytest.approx(0.25)
    loss.backward()
    assert fake.grad is not None and real.grad is None


# ------------------------------------------------------------------ shape errors


def test_shape_errors_name_the_shape(nets):
    img = torch.rand(1, 3, 8, 8)
    with pytest.raises(InputError, match=r"\(3, 8, 8\)"):
        valid_loss(torch.rand(3, 8, 8), img, torch.ones(1, 1, 8, 8))
    with pytest.raises(InputError, match=r"\(1, 3, 8, 9\)"):
        hole_loss(img, torch.rand(1, 3, 8, 9), torch.ones(1, 1, 8, 8))
    with pytest.raises(InputError, match=r"mask shape \(1, 2, 8, 8\)"):
        total_variation_loss(img, torch.ones(1, 2, 8, 8))
    with pytest.raises(InputError, match=r"\(1, 1, 64, 64\)"):
        nets["vgg16"](torch.rand(1, 1, 64, 64))
    with pytest.raises(InputError, match=r"\(1, 3, 8, 8\)"):
        nets["densenet121"](img)  # smaller than the deepest stride
    with pytest.raises(InputError, match=r"\(2,\)"):
        gram_matrix(torch.rand(2))
    with pytest.raises(InputError, match="floating point"):
        valid_loss(img, img, torch.ones(1, 1, 8, 8, dtype=torch.bool))


def test_weighted_loss_checks_inputs_before_work():
    loss = RepairLoss(RepairLossWeights(vgg16_weights=None, densenet_weights=None))
    img = torch.rand(1, 3, 16, 16)
    with pytest.raises(InputError, match=r"\(1, 1, 16, 8\)"):
        loss(img, img, torch.ones(1, 1, 16, 8), d_fake_logits=torch.zeros(1, 1))
    with pytest.raises(InputError, match="d_fake_logits"):
        loss(img, img, torch.ones(1, 1, 16, 16))
    eq9 = RepairLoss(RepairLossWeights(vgg16_weights=None, densenet_weights=None, adv_mode="eq9"))
    with pytest.raises(InputError, match="d_real_logits"):
        eq9(img, img, torch.ones(1, 1, 16, 16), d_fake_logits=torch.zeros(1, 1))


def test_bad_loss_configuration_is_refused():
    with pytest.raises(ConfigError, match="hole"):
        RepairLossWeights(hole=-1)
    with pytest.raises(ConfigError, match="adv_mode"):
        OptimizeLossWeights(adv_mode="wgan")
    with pytest.raises(ConfigError, match="pool9"):
        RepairLossWeights(densenet_layers=("pool9",))
    with pytest.raises(ConfigError, match="unknown RepairLossWeights key"):
        RepairLossWeights.from_mapping({"holes": 6})
    w = OptimizeLossWeights.from_mapping({"con": 1, "densenet_layers": ["pool2_conv"]})
    assert w.con == 1 and w.densenet_layers == ("pool2_conv",)


# ------------------------------------------------------------------ feature networks


def test_feature_layers_channels_and_strides(nets):
    x = torch.rand(1, 3, 64, 64)
    for kind, net in nets.items():
        feats = net(x)
        assert len(feats) == len(FEATURE_LAYERS[kind])
        for f, name in zip(feats, net.layers, strict=True):
            info = FEATURE_LAYERS[kind][name]
            assert f.shape == (1, info.channels, 64 // info.stride, 64 // info.stride), (kind, name)


def test_networks_are_truncated_frozen_and_stay_in_eval(nets):
    assert len(nets["vgg16"].features) == 17  # up to pool3, no classifier
    assert len(nets["vgg19"].features) == 19  # up to pool3
    assert list(dict(nets["densenet121"].features.named_children()))[-1] == "transition2"
    stage2 = _random_net("densenet121", ["pool2"])
    assert list(dict(stage2.features.named_children()))[-1] == "transition1"
    for net in nets.values():
        assert all(not p.requires_grad for p in net.parameters())
        net.train()
        assert not any(m.training for m in net.modules())


def test_gradients_reach_the_input(nets):
    for net in nets.values():
        x = torch.rand(1, 3, 32, 32, requires_grad=True)
        sum(f.square().mean() for f in net(x)).backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
        assert all(p.grad is None for p in net.parameters())


def test_random_init_is_seeded_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a = _random_net("vgg19", seed=3)
    b = _random_net("vgg19", seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(a(x)[0], b(x)[0])
    assert a.weights_source == "random:seed=3" and not a.pretrained


def test_none_weights_means_no_network():
    assert build_feature_extractor("vgg16", None) is None
    assert build_feature_extractor("densenet121", "none") is None


def test_missing_imagenet_weights_name_file_and_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    expected_dir = tmp_path / "hub" / "checkpoints"
    for kind, fname in [
        ("vgg16", "vgg16-397923af.pth"),
        ("vgg19", "vgg19-dcbb9e9d.pth"),
        ("densenet121", "densenet121-a639ec97.pth"),
    ]:
        assert imagenet_weights_file(kind) == expected_dir / fname
        with pytest.raises(WeightsError) as err:
            build_feature_extractor(kind, "imagenet")
        msg = str(err.value)
        assert fname in msg and str(expected_dir) in msg and "path" in msg


def test_imagenet_weights_load_from_cache_without_download(tmp_path, monkeypatch, nets):
    """A file placed in the cache (here random tensors under the ImageNet name) is used."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    src = nets["vgg16"]
    path = imagenet_weights_file("vgg16")
    path.parent.mkdir(parents=True)
    torch.save(src.state_dict(), path)
    net = build_feature_extractor("vgg16", "imagenet")
    assert net.pretrained and net.weights_source == f"imagenet:{path.name}"
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(net(x)[2], src(x)[3])  # pool3 (the fixture taps block3_conv3 too)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_explicit_path_weights_load(tmp_path, suffix):
    src = _random_net("densenet121", seed=1)
    path = tmp_path / f"dn{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    else:
        torch.save(src.state_dict(), path)
    loaded = build_feature_extractor("densenet121", path)
    other = _random_net("densenet121", seed=2)
    x = torch.rand(2, 3, 64, 64)
    for a, b, c in zip(loaded(x), src(x), other(x), strict=True):
        assert torch.equal(a, b)
        assert not torch.equal(a, c)
    assert loaded.weights_source == f"file:{path}" and loaded.pretrained


def test_explicit_path_accepts_old_densenet_keys_and_extra_keys(tmp_path):
    src = _random_net("densenet121", ["pool2"], seed=1)
    state = {}
    for k, v in src.state_dict().items():  # torchvision's ImageNet file uses "norm.1" style
        if k.endswith("num_batches_tracked"):  # ... and has no BatchNorm counters
            continue
        for part in ("norm1", "norm2", "relu1", "relu2", "conv1", "conv2"):
            k = k.replace(f".{part}.", f".{part[:-1]}.{part[-1]}.")
        state[k] = v
    state["classifier.weight"] = torch.zeros(1000, 1024)
    assert any(".norm.1." in k for k in state)
    path = tmp_path / "densenet121-old.pth"
    torch.save(state, path)
    loaded = build_feature_extractor("densenet121", str(path), ["pool2"])
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(loaded(x)[0], src(x)[0])


def test_bad_weight_files_raise_weights_error(tmp_path, nets):
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsError, match="does not exist"):
        build_feature_extractor("vgg16", missing)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="cannot read"):
        build_feature_extractor("vgg16", corrupt)
    foreign = tmp_path / "vgg.pth"
    torch.save(nets["vgg16"].state_dict(), foreign)
    with pytest.raises(WeightsError, match="not a torchvision densenet121"):
        build_feature_extractor("densenet121", foreign)


def test_unknown_network_or_layer_is_a_config_error():
    with pytest.raises(ConfigError, match="resnet50"):
        build_feature_extractor("resnet50", "random")
    with pytest.raises(ConfigError, match="pool7"):
        build_feature_extractor("vgg16", "random", ["pool7"])


# ------------------------------------------------------------------ weighted totals


def test_repair_loss_random_nets_all_terms(batch):
    out, real, mask = batch
    out = out.clone().requires_grad_(True)
    loss_fn = _random_weights(RepairLoss, ssim=1.0)
    loss, metrics = loss_fn(out, real, mask, d_fake_logits=torch.zeros(2, 1))
    expected = {
        "total",
        "valid",
        "hole",
        "per",
        "per_vgg16",
        "per_densenet121",
        "style_out",
        "style_com",
        "adv",
        "tv",
        "ssim",
    }
    assert set(metrics) == expected
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["adv"] == pytest.approx(math.log(2))
    assert metrics["per"] == pytest.approx(metrics["per_vgg16"] + 30 * metrics["per_densenet121"])
    w = loss_fn.weights
    total = (
        w.valid * metrics["valid"]
        + w.hole * metrics["hole"]
        + w.per * metrics["per"]
        + w.style * (metrics["style_out"] + metrics["style_com"])
        + w.adv * metrics["adv"]
        + w.tv * metrics["tv"]
        + w.ssim * metrics["ssim"]
    )
    assert metrics["total"] == pytest.approx(total, rel=1e-5)
    assert loss.item() == pytest.approx(metrics["total"])
    loss.backward()
    assert out.grad is not None and torch.isfinite(out.grad).all() and out.grad.abs().sum() > 0
    assert loss_fn.feature_sources == {"vgg16": "random:seed=0", "densenet121": "random:seed=0"}


def test_repair_loss_identical_images_feature_terms_zero(batch):
    _, real, mask = batch
    loss_fn = _random_weights(RepairLoss, adv=0)
    _, metrics = loss_fn(real, real, mask)
    for name in ("valid", "hole", "per", "style_out", "style_com"):
        assert metrics[name] == 0.0, name
    assert "adv" not in metrics


def test_repair_loss_without_feature_nets_skips_per_and_style(batch):
    out, real, mask = batch
    loss_fn = RepairLoss(RepairLossWeights(vgg16_weights="none", densenet_weights=None))
    assert len(loss_fn.nets) == 0
    _, metrics = loss_fn(out, real, mask, d_fake_logits=torch.zeros(2, 1))
    assert set(metrics) == {"total", "valid", "hole", "adv", "tv"}
    assert loss_fn.skipped["per"] == "no feature network"


def test_zero_weights_skip_terms_and_networks(batch):
    out, real, mask = batch
    loss_fn = RepairLoss(
        RepairLossWeights(per=0, style=0, adv=0, tv=0, vgg16_weights="imagenet")
    )  # no feature term: no network is built, so the missing ImageNet file does not matter
    assert len(loss_fn.nets) == 0
    _, metrics = loss_fn(out, real, mask)
    assert set(metrics) == {"total", "valid", "hole"}
    assert metrics["total"] == pytest.approx(2 * metrics["valid"] + 12 * metrics["hole"])


def test_optimize_loss_random_nets(batch):
    out, real, mask = batch
    out = out.clone().requires_grad_(True)
    loss_fn = _random_weights(OptimizeLoss)
    loss, metrics = loss_fn(out, real, mask, d_fake_logits=torch.zeros(2, 1))
    assert set(metrics) == {"total", "con", "per", "per_vgg19", "per_densenet121", "adv"}
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["per"] == pytest.approx(
        1.25 * metrics["per_vgg19"] + 50 * metrics["per_densenet121"], rel=1e-5
    )
    assert metrics["total"] == pytest.approx(
        40 * metrics["con"] + metrics["per"] + 0.75 * metrics["adv"], rel=1e-5
    )
    loss.backward()
    assert torch.isfinite(out.grad).all() and out.grad.abs().sum() > 0
    assert loss_fn.nets["densenet121"].layers == ("pool2",)
    assert loss_fn.nets["vgg19"].layers == ("block3_conv4",)


def test_optimize_loss_none_nets_and_eq9(batch):
    out, real, mask = batch
    loss_fn = OptimizeLoss(
        OptimizeLossWeights(vgg19_weights=None, densenet_weights=None, adv_mode="eq9")
    )
    fake = torch.tensor([[0.0], [math.log(3)]])
    real_logits = torch.tensor([[math.log(3)], [0.0]])
    _, metrics = loss_fn(out, real, mask, d_fake_logits=fake, d_real_logits=real_logits)
    assert set(metrics) == {"total", "con", "adv"}
    assert metrics["adv"] == pytest.approx(0.25)


@pytest.mark.parametrize("cls", [RepairLoss, OptimizeLoss])
def test_target_valid_excludes_pixels_in_both_stages(batch, cls):
    out, real, mask = batch
    loss_fn = _random_weights(cls, ssim=1.0, adv=0)
    assert isinstance(loss_fn, StageLoss)
    tv = torch.ones(2, 1, 64, 64)
    tv[:, :, 20:30, 10:20] = 0  # inside the hole
    tv[:, :, 50, :] = 0  # a dead row among known pixels
    poisoned = torch.where(tv > 0, real, torch.full_like(real, float("nan")))

    def run(target, **kw):
        o = out.clone().requires_grad_(True)
        loss, metrics = loss_fn(o, target, mask, **kw)
        loss.backward()
        return loss.detach(), metrics, o.grad

    plain = run(real)
    all_valid = run(real, target_valid=torch.ones(2, 1, 64, 64))
    assert torch.equal(plain[0], all_valid[0]) and plain[1] == all_valid[1]
    assert torch.equal(plain[2], all_valid[2])
    loss, metrics, grad = run(poisoned, target_valid=tv)
    assert torch.isfinite(loss) and all(math.isfinite(v) for v in metrics.values())
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert (grad * (1 - tv) == 0).all()  # no gradient through excluded pixels
    assert not torch.equal(loss, plain[0])


def test_target_valid_shape_is_checked(batch):
    out, real, mask = batch
    loss_fn = RepairLoss(RepairLossWeights(vgg16_weights="none", densenet_weights="none", adv=0))
    with pytest.raises(InputError, match=r"target_valid shape \(2, 1, 32, 32\)"):
        loss_fn(out, real, mask, target_valid=torch.ones(2, 1, 32, 32))
