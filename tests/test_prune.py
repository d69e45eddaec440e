"""Channel pruning of the repair generator (rnon_engine.train.prune)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from rnon_engine.nn.networks.repair import RepairConfig, RepairGenerator
from rnon_engine.train.prune import channel_scores, prune_repair


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 3, 48, 64, generator=g)
    mask = torch.ones(2, 1, 48, 64)
    mask[:, :, 10:25, 20:30] = 0
    return image, mask


def _randomised(model: RepairGenerator, seed: int) -> RepairGenerator:
    """Random weights and batch-norm statistics everywhere (the head too)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


def _embed(small: RepairGenerator, big: RepairGenerator, seed: int) -> None:
    """Write ``small`` into scattered channels of ``big``; the other channels are silent.

    A silent channel has a zero filter, bias and BN scale/shift, so its output is 0 and the
    layers that read it (whose weights stay random) see nothing of it.
    """
    g = torch.Generator().manual_seed(seed)
    depth = small.config.depth
    kept = {}
    for key, (s, b) in {
        **{("e", i): (small.encoder[i], big.encoder[i]) for i in range(depth)},
        **{("d", j): (small.decoder[j], big.decoder[j]) for j in range(depth)},
    }.items():
        n_small, n_big = s.conv.out_channels, b.conv.out_channels
        if n_small == n_big:
            kept[key] = torch.arange(n_big)
        else:
            kept[key] = torch.sort(torch.randperm(n_big, generator=g)[:n_small]).values
    c_in = small.encoder[0].conv.in_channels
    with torch.no_grad():
        for block in [*big.encoder, *big.decoder]:
            block.conv.weight.zero_()
            if block.conv.bias is not None:
                block.conv.bias.zero_()
            if isinstance(block.bn, nn.BatchNorm2d):
                block.bn.weight.zero_()
                block.bn.bias.zero_()

        def put(s, b, rows, cols):
            w = b.conv.weight
            # the inputs that are not written stay random: they read silent channels
            w.copy_(torch.randn(w.shape, generator=g))
            w[rows.unsqueeze(1), cols.unsqueeze(0)] = s.conv.weight
            keep = torch.zeros(w.shape[0], dtype=torch.bool)
            keep[rows] = True
            w[~keep] = 0
            if s.conv.bias is not None:
                b.conv.bias[rows] = s.conv.bias
            if isinstance(s.bn, nn.BatchNorm2d):
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(b.bn, name)[rows] = getattr(s.bn, name)

        cols = torch.arange(c_in)
        for i in range(depth):
            put(small.encoder[i], big.encoder[i], kept[("e", i)], cols)
            cols = kept[("e", i)]
        previous = ("e", depth - 1)
        for j in range(depth):
            width_prev = (
                big.encoder[depth - 1].conv.out_channels
                if j == 0
                else (big.decoder[j - 1].conv.out_channels)
            )
            level = depth - 2 - j
            skip = kept[("e", level)] if level >= 0 else torch.arange(c_in)
            put(
                small.decoder[j],
                big.decoder[j],
                kept[("d", j)],
                torch.cat([kept[previous], width_prev + skip]),
            )
            previous = ("d", j)
        big.head.load_state_dict(small.head.state_dict())


def test_pruning_a_network_with_silent_channels_gives_back_the_small_one():
    # Push-pull prefill and sides that are multiples of 2**depth: every join's parts have
    # the same mask, so the partial convolutions' ratios do not depend on the channel counts.
    config = RepairConfig(width=0.125, depth=4, prefill="pushpull")
    small = _randomised(RepairGenerator(config), 1)
    big = _randomised(RepairGenerator(dataclasses.replace(config, width=0.25)), 2)
    _embed(small, big, seed=3)
    image, mask = _inputs()
    with torch.no_grad():
        expected = small(image, mask)
        assert torch.allclose(big(image, mask), expected, atol=1e-5)
        pruned = prune_repair(big, 0.125)
        assert pruned.config.width == 0.125
        assert [b.conv.out_channels for b in pruned.encoder] == [
            b.conv.out_channels for b in small.encoder
        ]
        torch.testing.assert_close(pruned(image, mask), expected, atol=1e-5, rtol=0)


def test_pruning_to_the_same_width_changes_nothing():
    model = _randomised(RepairGenerator(RepairConfig(width=0.25, depth=5, prefill="pushpull")), 4)
    pruned = prune_repair(model, 0.25)
    before, after = model.state_dict(), pruned.state_dict()
    assert list(before) == list(after)
    for key, value in before.items():
        assert torch.equal(value, after[key]), key


def test_scores_rank_channels_by_what_their_readers_take_from_them():
    model = _randomised(RepairGenerator(RepairConfig(width=0.25, depth=3)), 5)
    with torch.no_grad():
        model.encoder[1].bn.weight[3] = 0.0  # silent: score 0 however it is read
        # level 1's channel 5 unread: by encoder 2 nor by decoder 0 (after the bottleneck)
        model.encoder[2].conv.weight[:, 5] = 0.0
        model.decoder[0].conv.weight[:, model.encoder[2].conv.out_channels + 5] = 0.0
    scores = channel_scores(model)
    assert scores[("encoder", 1)][3] == 0
    assert scores[("encoder", 1)][5] == 0
    assert (scores[("encoder", 1)][[i for i in range(32) if i not in (3, 5)]] > 0).all()
    assert ("decoder", 2) not in scores  # the image channels are always kept


def test_pruning_cannot_widen():
    model = RepairGenerator(RepairConfig(width=0.125, depth=3))
    with pytest.raises(ValueError, match="at most the model's own width"):
        prune_repair(model, 0.25)


def test_the_command_writes_a_pruned_weights_file(tmp_path, capsys):
    from training.prune import main

    from rnon_engine import create_model, save_weights
    from rnon_engine.nn.weights import load_model, read_metadata

    model = _randomised(create_model("rnon-repair", width=0.25, depth=4, prefill="pushpull"), 6)
    src = save_weights(model, tmp_path / "trained.safetensors")
    out = tmp_path / "thin.safetensors"
    assert main(["--weights", str(src), "--width", "0.125", "--out", str(out)]) == 0
    loaded = load_model(out).eval()
    assert loaded.config.width == 0.125 and loaded.config.depth == 4
    assert read_metadata(out)["pruned_from"] == "trained.safetensors"
    image, mask = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(image, mask), prune_repair(model, 0.125)(image, mask))


@pytest.mark.parametrize(
    ("weights", "width", "out", "message"),
    [
        ("t.safetensors", "0.5", "thin.safetensors", "--width must be in (0, 0.25]"),
        ("t.safetensors", "0", "thin.safetensors", "--width must be in (0, 0.25]"),
        ("missing.safetensors", "0.125", "thin.safetensors", "no weights file"),
        ("t.safetensors", "0.125", "thin.pt", "must end in .safetensors"),
    ],
)
def test_the_command_refuses_bad_arguments_before_writing(
    tmp_path, capsys, weights, width, out, message
):
    from training.prune import main

    from rnon_engine import create_model, save_weights

    save_weights(create_model("rnon-repair", width=0.25, depth=3), tmp_path / "t.safetensors")
    argv = ["--weights", str(tmp_path / weights), "--width", width, "--out", str(tmp_path / out)]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.safetensors"]
