"""PartialConv2d: hole independence, equality with nn.Conv2d, the mask update, gradients."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rnon_engine.errors import InputError
from rnon_engine.nn.partial_conv import PartialConv2d


def _random_mask(n: int, c: int, h: int, w: int, p_hole: float = 0.4) -> torch.Tensor:
    return (torch.rand(n, c, h, w) > p_hole).float()


def _reference(layer: PartialConv2d, x: torch.Tensor, mask: torch.Tensor):
    """Loop implementation of the spec's formula (slow; tiny inputs only)."""
    x = x.double()
    mask = mask.double().expand_as(x) if mask.shape[1] == 1 else mask.double()
    kh, kw = layer.kernel_size
    sh, sw = layer.stride
    ph, pw = layer.padding
    dh, dw = layer.dilation
    xp = F.pad(x, (pw, pw, ph, ph))
    mp = F.pad(mask, (pw, pw, ph, ph))
    n, _, hp, wp = xp.shape
    ho = (hp - dh * (kh - 1) - 1) // sh + 1
    wo = (wp - dw * (kw - 1) - 1) // sw + 1
    w_ = layer.weight.double()
    out = torch.zeros(n, layer.out_channels, ho, wo, dtype=torch.float64)
    new = torch.zeros(n, 1, ho, wo, dtype=torch.float64)
    for b, i, j in itertools.product(range(n), range(ho), range(wo)):
        rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
        cols = slice(j * sw, j * sw + dw * (kw - 1) + 1, dw)
        xw, mw = xp[b, :, rows, cols], mp[b, :, rows, cols]
        valid = mw.sum()
        if valid > 0:
            conv = (w_ * (xw * mw)).sum(dim=(1, 2, 3))
            out[b, :, i, j] = conv * (x.shape[1] * kh * kw) / valid
            if layer.bias is not None:
                out[b, :, i, j] += layer.bias.double()
            new[b, 0, i, j] = 1.0
    return out, new


# The reference expands a 1-channel mask to C channels, so its sum(1) is C*kh*kw; the
# layer's is kh*kw with sum(M) counted once: the same ratio, which the test below checks.


@pytest.mark.parametrize("mask_channels", [1, 3])
def test_output_ignores_hole_values(mask_channels: int) -> None:
    layer = PartialConv2d(3, 5, 3, padding=1)
    x = torch.rand(2, 3, 12, 10)
    mask = _random_mask(2, mask_channels, 12, 10, 0.5)
    out1, m1 = layer(x, mask)
    noise = torch.randn(2, 3, 12, 10) * 1e3
    x2 = torch.where(mask.bool(), x, noise)
    out2, m2 = layer(x2, mask)
    assert torch.equal(out1, out2)
    assert torch.equal(m1, m2)
    # and the inputs are left as they were
    assert torch.equal(x2, torch.where(mask.bool(), x, noise))


def test_all_valid_mask_equals_conv2d_without_padding() -> None:
    layer = PartialConv2d(4, 6, 3, padding=0)
    conv = nn.Conv2d(4, 6, 3, padding=0)
    conv.load_state_dict(layer.state_dict())
    x = torch.randn(2, 4, 11, 9)
    out, new_mask = layer(x, torch.ones(2, 1, 11, 9))
    torch.testing.assert_close(out, conv(x), rtol=1e-5, atol=1e-5)
    assert torch.equal(new_mask, torch.ones(2, 1, 9, 7))


@pytest.mark.parametrize("k, d", [(3, 1), (5, 1), (3, 2)])
def test_all_valid_mask_equals_conv2d_in_interior_with_padding(k: int, d: int) -> None:
    pad = d * (k // 2)
    layer = PartialConv2d(3, 4, k, padding=pad, dilation=d)
    conv = nn.Conv2d(3, 4, k, padding=pad, dilation=d)
    conv.load_state_dict(layer.state_dict())
    x = torch.randn(1, 3, 16, 14)
    out, _ = layer(x, torch.ones(1, 3, 16, 14))
    ref = conv(x)
    inner = (..., slice(pad, -pad), slice(pad, -pad))
    torch.testing.assert_close(out[inner], ref[inner], rtol=1e-5, atol=1e-5)
    # at the border zero padding counts as hole, so the layer re-weights there
    assert not torch.allclose(out[..., 0, 0], ref[..., 0, 0])


def test_hand_computed_mask_update_and_renormalisation() -> None:
    layer = PartialConv2d(1, 1, 2, padding=0)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]))
        layer.bias.fill_(0.5)
    x = torch.tensor([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]]])
    mask = torch.tensor([[[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]])
    out, new_mask = layer(x, mask)
    # (0,0): valid 1 (w=1) and 4 (w=3): 13 * 4/2 + 0.5; (1,0): valid 4 (w=1): 4 * 4/1 + 0.5;
    # the right-hand windows hold no valid pixel: output 0 (no bias), mask 0.
    expected = torch.tensor([[[[26.5, 0.0], [16.5, 0.0]]]])
    torch.testing.assert_close(out, expected)
    assert torch.equal(new_mask, torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]]))


def test_hand_computed_channel_mask_counts_every_channel() -> None:
    # sum(1) = C * kh * kw = 2 * 1 * 1 for a 1x1 kernel over two channels.
    layer = PartialConv2d(2, 1, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[[[1.0]], [[10.0]]]]))
    x = torch.tensor([[[[3.0, 3.0, 3.0]], [[5.0, 5.0, 5.0]]]])  # [1,2,1,3]
    mask = torch.tensor([[[[1.0, 0.0, 0.0]], [[1.0, 1.0, 0.0]]]])
    out, new_mask = layer(x, mask)
    # px0: both valid: 3 + 50 = 53 (ratio 2/2); px1: channel 1 only: 50 * 2/1; px2: none.
    torch.testing.assert_close(out, torch.tensor([[[[53.0, 100.0, 0.0]]]]))
    assert torch.equal(new_mask, torch.tensor([[[[1.0, 1.0, 0.0]]]]))


@pytest.mark.parametrize(
    "k, stride, pad, dil, mask_channels",
    [(3, 1, 1, 1, 1), (3, 2, 1, 1, 3), (5, 2, 2, 1, 1), (3, 1, 2, 2, 3), (2, 1, 0, 1, 1)],
)
def test_matches_loop_reference(k: int, stride: int, pad: int, dil: int, mask_channels: int):
    layer = PartialConv2d(3, 2, k, stride=stride, padding=pad, dilation=dil).double()
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    mask = _random_mask(2, mask_channels, 7, 6, 0.4).double()
    mask[:, :, :5, :5] = 0  # a large hole, so some windows see no valid pixel at all
    out, new_mask = layer(x, mask)
    ref_out, ref_mask = _reference(layer, x, mask)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(new_mask, ref_mask)
    assert (ref_mask == 0).any() and (ref_mask == 1).any()


@pytest.mark.parametrize(
    "k, stride, pad, dil", [(3, 1, 1, 1), (7, 2, 3, 1), (3, 2, 1, 1), (3, 1, 4, 4), (5, 3, 0, 2)]
)
def test_output_shapes_follow_conv2d(k: int, stride: int, pad: int, dil: int) -> None:
    layer = PartialConv2d(3, 8, k, stride=stride, padding=pad, dilation=dil)
    conv = nn.Conv2d(3, 8, k, stride=stride, padding=pad, dilation=dil)
    x = torch.rand(2, 3, 33, 21)
    out, new_mask = layer(x, _random_mask(2, 1, 33, 21))
    assert out.shape == conv(x).shape
    assert new_mask.shape == (2, 1, *out.shape[2:])
    assert set(new_mask.unique().tolist()) <= {0.0, 1.0}


def test_bool_mask_equals_float_mask() -> None:
    layer = PartialConv2d(3, 4, 3, padding=1)
    x = torch.rand(1, 3, 8, 8)
    mask = _random_mask(1, 1, 8, 8)
    a, ma = layer(x, mask)
    b, mb = layer(x, mask.bool())
    assert torch.equal(a, b) and torch.equal(ma, mb)


@pytest.mark.parametrize("mask_channels", [1, 2])
def test_gradcheck_float64(mask_channels: int) -> None:
    layer = PartialConv2d(2, 3, 3, stride=2, padding=1, dilation=1).double()
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    mask = _random_mask(1, mask_channels, 6, 5, 0.5).double()
    weight = layer.weight.detach().clone().requires_grad_(True)
    bias = layer.bias.detach().clone().requires_grad_(True)

    def f(x, weight, bias):
        out, _ = torch.func.functional_call(layer, {"weight": weight, "bias": bias}, (x, mask))
        return out

    assert torch.autograd.gradcheck(f, (x, weight, bias))


def test_hole_pixels_get_no_gradient() -> None:
    layer = PartialConv2d(3, 4, 3, padding=1)
    x = torch.rand(1, 3, 9, 9, requires_grad=True)
    mask = _random_mask(1, 3, 9, 9, 0.5)
    layer(x, mask)[0].sum().backward()
    assert torch.all(x.grad[mask == 0] == 0)


@pytest.mark.parametrize(
    "x_shape, mask_shape",
    [
        ((3, 8, 8), (1, 8, 8)),  # no batch dimension
        ((1, 3, 8, 8), (1, 8, 8)),  # mask 3-D
        ((1, 3, 8, 8), (1, 1, 8, 7)),  # mask W differs
        ((1, 3, 8, 8), (1, 2, 8, 8)),  # mask channels neither 1 nor C
        ((2, 3, 8, 8), (3, 1, 8, 8)),  # batch differs (and is not 1: shared)
        ((1, 4, 8, 8), (1, 1, 8, 8)),  # wrong input channels
    ],
)
def test_shape_errors_raise_input_error(x_shape, mask_shape) -> None:
    layer = PartialConv2d(3, 4, 3, padding=1)
    with pytest.raises(InputError, match=r"\d"):
        layer(torch.rand(*x_shape), torch.ones(*mask_shape))


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("shared", [False, True])
def test_parts_equal_the_concatenated_input_bit_for_bit(stride: int, shared: bool) -> None:
    """The U-Net decoder's join: ``forward_parts`` is ``forward`` on the concatenation."""
    g = torch.Generator().manual_seed(3)
    conv = PartialConv2d(5 + 3, 6, 3, stride=stride, padding=1)
    nb = 1 if shared else 4
    x1, x2 = torch.randn(4, 5, 13, 11, generator=g), torch.randn(4, 3, 13, 11, generator=g)
    m1 = (torch.rand(nb, 1, 13, 11, generator=g) > 0.4).float()
    m2 = (torch.rand(nb, 1, 13, 11, generator=g) > 0.7).float()
    cat_mask = torch.cat([m1.expand(4, 5, -1, -1), m2.expand(4, 3, -1, -1)], dim=1)
    want, want_mask = conv(torch.cat([x1, x2], dim=1), cat_mask)
    got, got_mask = conv.forward_parts([(x1, m1), (x2, m2)])
    assert torch.equal(got, want)
    assert torch.equal(got_mask.expand_as(want_mask), want_mask)
    # one part with a one-channel mask: forward itself
    assert torch.equal(
        conv.forward_parts([(torch.cat([x1, x2], 1), m1)])[0], conv(torch.cat([x1, x2], 1), m1)[0]
    )


def test_a_mask_shared_by_the_batch_equals_one_mask_per_image() -> None:
    g = torch.Generator().manual_seed(4)
    conv = PartialConv2d(3, 4, 5, stride=2, padding=2)
    x = torch.randn(3, 3, 16, 16, generator=g)
    m = (torch.rand(1, 1, 16, 16, generator=g) > 0.5).float()
    out, new = conv(x, m)
    want, want_new = conv(x, m.expand(3, -1, -1, -1))
    assert new.shape[0] == 1 and torch.equal(out, want) and torch.equal(new[0], want_new[1])


def test_parts_that_do_not_fit_raise_input_error() -> None:
    conv = PartialConv2d(8, 2, 3, padding=1)
    x1, x2 = torch.zeros(2, 5, 8, 8), torch.zeros(2, 3, 8, 8)
    with pytest.raises(InputError, match="input channels"):
        conv.forward_parts([(x1, torch.ones(2, 1, 8, 8))])
    with pytest.raises(InputError, match="share batch size"):
        conv.forward_parts([(x1, torch.ones(2, 1, 8, 8)), (x2[:, :, :7], torch.ones(2, 1, 7, 8))])
    with pytest.raises(InputError, match="at least one"):
        conv.forward_parts([])
