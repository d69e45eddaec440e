"""Every registered network: shapes, gradients, invariants; the registry and the configs."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from torch import nn

import rnon_engine
from rnon_engine import ConfigError, InputError, create_model, list_models, register_model
from rnon_engine.nn.registry import get_spec

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")),
]

# Small variants of each model, so that the whole file runs in seconds on a shared CPU.
SMALL = {
    "rnon-repair": {"width": 0.125, "depth": 4},
    "rnon-optimize": {"width": 0.25, "blocks": 2},
    "rnon-repair-disc": {"width": 0.125, "dense": 16},
    "rnon-optimize-disc": {"width": 0.125, "dense": 16},
    "rnon-repair-stack": {"width": 8},
}


def small(name: str, **overrides) -> nn.Module:
    """A small instance of a registered model (models added later get width 0.125)."""
    fields = {f.name for f in dataclasses.fields(get_spec(name).config_cls)}
    base = SMALL.get(name, {"width": 0.125} if "width" in fields else {})
    return create_model(name, **{**base, **overrides})


def takes_mask(model: nn.Module) -> bool:
    return "mask" in inspect.signature(model.forward).parameters


def make_inputs(model: nn.Module, n: int, h: int, w: int, device: str = "cpu"):
    if getattr(model, "model_name", "") == "rnon-repair-stack":  # planes, masks, fills
        s = model.config.slots
        x = torch.rand(n, 4 * s + 5, h, w, device=device)
        x[:, 2 * s + 1 : 4 * s + 2] = (x[:, 2 * s + 1 : 4 * s + 2] > 0.3).float()
        return (x,)
    image = torch.rand(n, 3, h, w, device=device)
    if not takes_mask(model):
        return (image,)
    mask = (torch.rand(n, 1, h, w, device=device) > 0.3).float()
    mask[:, :, h // 4 : h // 2, w // 4 : w // 2] = 0
    return image, mask


def test_the_four_paper_models_are_registered() -> None:
    assert {"rnon-repair", "rnon-optimize", "rnon-repair-disc", "rnon-optimize-disc"} <= set(
        list_models()
    )
    assert list_models() == sorted(list_models())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list_models())
def test_forward_backward_two_sizes(name: str, device: str) -> None:
    model = small(name).to(device).train()
    for h, w in [(64, 64), (70, 45)]:
        model.zero_grad(set_to_none=True)
        inputs = make_inputs(model, 2, h, w, device)
        out = model(*inputs)
        assert torch.isfinite(out).all()
        if takes_mask(model) or name == "rnon-optimize":
            assert out.shape == inputs[0].shape
        if "disc" in name:
            assert out.shape == (2, 1)
        (out * torch.randn_like(out)).sum().backward()
        for pname, p in model.named_parameters():
            assert p.grad is not None, f"{name}: {pname} got no gradient at {h}x{w}"
            assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"


@pytest.mark.parametrize("name", list_models())
def test_every_parameter_gets_a_nonzero_gradient(name: str) -> None:
    model = small(name).train()
    with torch.no_grad():  # the stage-2 tail starts at zero, which blocks every gradient
        for p in model.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0, 0.01)
    inputs = make_inputs(model, 2, 48, 40)
    out = model(*inputs)
    (out * torch.randn_like(out)).sum().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not dead, f"{name}: parameters with zero gradient: {dead}"


@pytest.mark.parametrize("name", [n for n in SMALL if "disc" in n])
@pytest.mark.parametrize("size", [(8, 8), (33, 47), (100, 64)])
def test_discriminators_take_any_size(name: str, size: tuple[int, int]) -> None:
    model = small(name).eval()
    with torch.no_grad():
        assert model(torch.rand(3, 3, *size)).shape == (3, 1)


@pytest.mark.parametrize("pad_mode", ["hole", "reflect"])
@pytest.mark.parametrize("size", [(70, 45), (10, 7), (32, 48)])
def test_repair_output_in_unit_range_and_same_size(pad_mode: str, size: tuple[int, int]) -> None:
    model = small("rnon-repair", pad_mode=pad_mode).eval()
    image, mask = make_inputs(model, 1, *size)
    before = (image.clone(), mask.clone())
    with torch.no_grad():
        out = model(image, mask)
    assert out.shape == image.shape
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(image, before[0]) and torch.equal(mask, before[1])


def _repair_variants() -> list[dict]:
    """Every pad mode, and every prefill the config knows (if it has that field)."""
    fields = {f.name for f in dataclasses.fields(get_spec("rnon-repair").config_cls)}
    variants = [{"pad_mode": "hole"}, {"pad_mode": "reflect"}]
    if "prefill" in fields:
        variants.append({"prefill": "pushpull"})
    return variants


@pytest.mark.parametrize("mask_channels", [1, 3])
@pytest.mark.parametrize("variant", _repair_variants(), ids=str)
def test_repair_output_ignores_hole_values(variant: dict, mask_channels: int) -> None:
    model = small("rnon-repair", **variant).eval()
    image = torch.rand(2, 3, 70, 45)
    mask = (torch.rand(2, mask_channels, 70, 45) > 0.4).float()
    noisy = torch.where(mask.bool(), image, torch.randn(2, 3, 70, 45) * 100)
    with torch.no_grad():
        assert torch.equal(model(image, mask), model(noisy, mask))


def test_repair_pad_modes_differ_only_through_the_border() -> None:
    # At a multiple of 2**depth there is no padding: both modes compute the same thing.
    hole = small("rnon-repair", pad_mode="hole").eval()
    refl = small("rnon-repair", pad_mode="reflect").eval()
    refl.load_state_dict(hole.state_dict())
    image, mask = make_inputs(hole, 1, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(hole(image, mask), refl(image, mask))
        image, mask = make_inputs(hole, 1, 30, 45)
        assert not torch.allclose(hole(image, mask), refl(image, mask))


@pytest.mark.parametrize("variant", _repair_variants(), ids=str)
def test_repair_pad_to_is_the_same_computation_at_a_multiple_of_2_pow_depth(variant) -> None:
    # pad_to only changes how far the input is padded: at a multiple of 2**depth nothing
    # is padded either way and every level has exactly half the size of the one above.
    model = small("rnon-repair", **variant).eval()
    side = model.multiple
    image, mask = make_inputs(model, 2, side, 2 * side)
    with torch.no_grad():
        ref = model(image, mask)
        for pad_to in (1, 8, side):
            assert torch.equal(model(image, mask, pad_to=pad_to), ref)


@pytest.mark.parametrize("variant", _repair_variants(), ids=str)
@pytest.mark.parametrize("size", [(37, 53), (1, 5), (48, 48)])
def test_repair_pad_to_computes_any_size_unpadded(variant, size) -> None:
    model = small("rnon-repair", **variant).eval()
    nn.init.normal_(model.head.weight, std=0.5)  # a prefill model's head starts at zero
    image, mask = make_inputs(model, 2, *size)
    noisy = torch.where(mask.bool(), image, torch.randn_like(image) * 100)
    with torch.no_grad():
        out = model(image, mask, pad_to=1)
        assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1
        assert torch.equal(out, model(noisy, mask, pad_to=1))
        if size == (37, 53):  # padded differently: a different (but valid) computation
            assert not torch.equal(out, model(image, mask))


@pytest.mark.parametrize("pad_to", [0, 3, 24, -16])
def test_repair_pad_to_must_be_a_power_of_two(pad_to) -> None:
    model = small("rnon-repair").eval()
    with pytest.raises(InputError, match="power of two"):
        model(torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32), pad_to=pad_to)


def test_repair_shape_errors() -> None:
    model = small("rnon-repair").eval()
    with pytest.raises(InputError):
        model(torch.rand(1, 1, 32, 32), torch.ones(1, 1, 32, 32))
    with pytest.raises(InputError):
        model(torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 31))
    with pytest.raises(InputError):
        model(torch.rand(1, 3, 32, 32), torch.ones(1, 2, 32, 32))


@pytest.mark.parametrize("name", ["rnon-optimize", "rnon-repair-disc", "rnon-optimize-disc"])
def test_image_models_refuse_wrong_channels(name: str) -> None:
    with pytest.raises(InputError):
        small(name)(torch.rand(1, 4, 16, 16))


def test_optimize_generator_is_identity_at_init() -> None:
    model = create_model("rnon-optimize", blocks=2).eval()
    image = torch.rand(2, 3, 37, 29)
    with torch.no_grad():
        assert torch.equal(model(image), image)


@pytest.mark.parametrize("fuse_kernel", [1, 3])
def test_optimize_halo_is_the_exact_receptive_radius(fuse_kernel: int) -> None:
    model = small("rnon-optimize", fuse_kernel=fuse_kernel).double().eval()
    # Positive weights on a positive image keep every ReLU on, so that a change reaches as far
    # as the convolutions allow (the halo is an upper bound that a dead ReLU may not reach).
    with torch.no_grad():
        for p in model.parameters():
            p.abs_().add_(1e-3)
    halo = model.config.halo
    size, c = 2 * halo + 11, halo + 5
    image = 0.25 + 0.5 * torch.rand(1, 3, size, size, dtype=torch.float64)
    changed = image.clone()
    changed[..., c, c] += 0.3

    def delta(x: torch.Tensor) -> torch.Tensor:  # the residual, before the clamp
        return model.tail(model.blocks(model.head(x)))

    with torch.no_grad():
        diff = (delta(changed) - delta(image)).abs().amax(dim=(0, 1))
    ys, xs = torch.nonzero(diff > 0, as_tuple=True)
    assert (ys.min().item(), ys.max().item()) == (c - halo, c + halo)
    assert (xs.min().item(), xs.max().item()) == (c - halo, c + halo)


def test_optimize_forward_equals_the_plain_layer_by_layer_computation() -> None:
    # forward() runs in channels_last for speed; the result must be the NCHW computation's.
    model = small("rnon-optimize", fuse_kernel=3).eval()
    with torch.no_grad():
        model.tail.weight.normal_(0, 1e-4)
    image = torch.rand(2, 3, 37, 29)
    with torch.no_grad():
        out = model(image)
        ref = (image + model.tail(model.blocks(model.head(image)))).clamp(0, 1)
    assert out.is_contiguous() and out.shape == image.shape
    assert not torch.equal(out, image)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_default_repair_generator_is_the_papers_size() -> None:
    with torch.device("meta"):  # count without allocating or initialising 33M weights
        model = create_model("rnon-repair")
    assert model.config.width == 1.0 and model.config.depth == 8
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 32.86e6) < 0.01e6, n


def test_width_and_depth_overrides_shrink_the_repair_generator() -> None:
    with torch.device("meta"):
        full = create_model("rnon-repair")
        narrow = create_model("rnon-repair", width=0.5)
        shallow = create_model("rnon-repair", depth=6)

    def count(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    assert count(narrow) < count(full) / 3
    assert count(shallow) < count(full)
    assert len(shallow.encoder) == 6 and len(shallow.decoder) == 6


def test_registry_refuses_duplicate_names() -> None:
    spec = get_spec("rnon-repair")
    with pytest.raises(ValueError, match="already registered"):
        register_model("rnon-repair", spec.config_cls, spec.builder)
    assert get_spec("rnon-repair") is spec


def test_registry_refuses_non_frozen_config() -> None:
    @dataclasses.dataclass
    class Loose:
        width: float = 1.0

    with pytest.raises(TypeError, match="frozen"):
        register_model("test-loose-config", Loose, lambda c: nn.Identity())
    assert "test-loose-config" not in list_models()


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        create_model("rnon-nope")
    for name in list_models():
        assert name in str(info.value)


def test_unknown_override_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="colour") as info:
        create_model("rnon-repair", colour=3)
    assert "width" in str(info.value)  # and the known options are listed


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("rnon-repair", {"width": 0}),
        ("rnon-repair", {"depth": 11}),
        ("rnon-repair", {"pad_mode": "mirror"}),
        ("rnon-repair", {"width": "wide"}),
        ("rnon-optimize", {"fuse_kernel": 5}),
        ("rnon-optimize", {"dilations": ()}),
        ("rnon-repair-disc", {"blocks": 1}),
    ],
)
def test_bad_config_values_raise_config_error(name: str, overrides: dict) -> None:
    with pytest.raises(ConfigError, match=name):
        create_model(name, **overrides)


@pytest.mark.parametrize("name", list_models())
def test_configs_are_frozen_and_carried_by_the_model(name: str) -> None:
    model = small(name)
    assert model.model_name == name
    assert dataclasses.is_dataclass(model.config)
    field = dataclasses.fields(model.config)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(model.config, field, 2)
    # the config rebuilds the same architecture
    again = create_model(name, **dataclasses.asdict(model.config))
    assert again.config == model.config
    assert {k: v.shape for k, v in again.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }


def test_public_names() -> None:
    for name in ["create_model", "list_models", "register_model", "save_weights", "load_model"]:
        assert callable(getattr(rnon_engine, name))
