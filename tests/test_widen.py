"""Widening the repair generator's last decoder layer (rnon_engine.train.widen)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from rnon_engine import create_model, save_weights
from rnon_engine.nn.networks.repair import RepairConfig, RepairGenerator
from rnon_engine.train.prune import prune_repair
from rnon_engine.train.widen import widen_head


def _trained_looking(seed: int, **config) -> RepairGenerator:
    """Random weights everywhere (the zero-initialised head too) and BN statistics."""
    g = torch.Generator().manual_seed(seed)
    model = create_model("rnon-repair", **config)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


def _inputs(h: int = 48, w: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 3, h, w, generator=g)
    mask = (torch.rand(2, 1, h, w, generator=g) > 0.25).float()
    mask[:, :, h // 4 : h // 2, w // 3 : w // 2] = 0
    return image, mask


def test_config_takes_the_image_channels_by_default_and_refuses_bad_values():
    assert RepairConfig().last_channels == 3
    assert RepairConfig(head_channels=16).last_channels == 16
    with pytest.raises(ValueError, match="head_channels must be in"):
        RepairConfig(head_channels=-1)
    net = RepairGenerator(RepairConfig(width=0.125, depth=3, head_channels=16))
    assert net.decoder[-1].conv.out_channels == 16
    assert tuple(net.head.weight.shape) == (3, 16, 1, 1)


@pytest.mark.parametrize("prefill", ["pushpull", "none"])
def test_the_widened_network_computes_what_the_trained_one_does(prefill):
    model = _trained_looking(1, width=0.125, depth=4, prefill=prefill)
    wide = widen_head(model, 16)
    assert wide.config == dataclasses.replace(model.config, head_channels=16)
    assert wide.decoder[-1].conv.out_channels == 16
    # The new filters are initialised (not zero) and the head does not read them yet.
    assert wide.decoder[-1].conv.weight[3:].abs().sum() > 0
    assert torch.equal(wide.head.weight[:, 3:], torch.zeros(3, 13, 1, 1))
    with torch.no_grad():
        for h, w, pad in [(48, 64, None), (37, 53, 8), (16, 16, None)]:
            image, mask = _inputs(h, w)
            torch.testing.assert_close(
                wide(image, mask, pad_to=pad), model(image, mask, pad_to=pad), atol=1e-6, rtol=0
            )


def test_the_new_channels_learn():
    """One step of training moves the head's weights on the new channels off zero."""
    wide = widen_head(_trained_looking(2, width=0.125, depth=3, prefill="pushpull"), 8).train()
    image, mask = _inputs(32, 32)
    loss = (wide(image, mask) - image).abs().mean()
    loss.backward()
    assert wide.head.weight.grad[:, 3:].abs().sum() > 0


def test_widening_keeps_the_present_outputs_and_the_model_unchanged():
    model = _trained_looking(3, width=0.125, depth=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="at least 3"):
        widen_head(model, 2)
    wide = widen_head(model, 8)
    with pytest.raises(ValueError, match="at least 8"):
        widen_head(wide, 4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not wide.training
    # Widening to the same width is a copy.
    same = widen_head(wide, 8)
    assert all(
        torch.equal(a, b)
        for a, b in zip(same.state_dict().values(), wide.state_dict().values(), strict=True)
    )


def test_pruning_a_widened_network_keeps_its_last_layer():
    wide = widen_head(_trained_looking(4, width=0.25, depth=4, prefill="pushpull"), 16)
    thin = prune_repair(wide, 0.125)
    assert thin.config.head_channels == 16 and thin.config.width == 0.125
    assert torch.equal(thin.head.weight, wide.head.weight)
    assert thin.decoder[-1].conv.out_channels == 16


def test_onnx_runtime_runs_the_widened_network_as_torch_does(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import onnxruntime as ort

    from rnon_engine.export.onnx_export import export_graphs
    from rnon_engine.inference.onnx_model import TOLERANCE

    model = _trained_looking(5, width=0.125, depth=5, prefill="pushpull")
    wide = widen_head(model, 16)
    with torch.no_grad():  # let the new channels act, as after training
        wide.head.weight[:, 3:].normal_(0, 0.2)
    paths = export_graphs(wide, None, tmp_path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(paths["repair"]), opts, providers=["CPUExecutionProvider"])
    image, mask = _inputs(40, 56)
    holes = 1 - mask
    with torch.no_grad():
        ref = mask * image + holes * wide(image, mask)
    feeds = {"image": image.numpy(), "mask": holes.numpy(), "pad": np.zeros(32, np.float32)}
    np.testing.assert_allclose(sess.run(None, feeds)[0], ref.numpy(), atol=TOLERANCE, rtol=0)


def test_the_command_writes_a_widened_weights_file(tmp_path, capsys):
    from training.widen import main

    from rnon_engine.nn.weights import load_model, read_metadata

    model = _trained_looking(6, width=0.125, depth=4, prefill="pushpull")
    src = save_weights(model, tmp_path / "trained.safetensors")
    out = tmp_path / "wide.safetensors"
    assert main(["--weights", str(src), "--head-channels", "16", "--out", str(out)]) == 0
    loaded = load_model(out).eval()
    assert loaded.config.head_channels == 16 and loaded.config.width == 0.125
    assert read_metadata(out)["widened_from"] == "trained.safetensors"
    image, mask = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(image, mask), model(image, mask), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("weights", "channels", "out", "message"),
    [
        ("t.safetensors", "2", "wide.safetensors", "--head-channels must be in [3, 512]"),
        ("t.safetensors", "600", "wide.safetensors", "--head-channels must be in [3, 512]"),
        ("missing.safetensors", "16", "wide.safetensors", "no weights file"),
        ("t.safetensors", "16", "wide.pt", "must end in .safetensors"),
        ("s2.safetensors", "16", "wide.safetensors", "is not a stage-1 (repair) generator"),
    ],
)
def test_the_command_refuses_bad_arguments_before_writing(
    tmp_path, capsys, weights, channels, out, message
):
    from training.widen import main

    save_weights(create_model("rnon-repair", width=0.125, depth=3), tmp_path / "t.safetensors")
    save_weights(create_model("rnon-optimize", width=0.25, blocks=1), tmp_path / "s2.safetensors")
    argv = ["--weights", str(tmp_path / weights), "--head-channels", channels]
    assert main([*argv, "--out", str(tmp_path / out)]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s2.safetensors", "t.safetensors"]
