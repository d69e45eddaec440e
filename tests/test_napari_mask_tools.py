"""The mask rules behind the Inpaint widget's mask tools (no display needed)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_rnon._mask_tools import (
    ValueRule,
    grow_shrink,
    hot_pixel_mask,
    parse_value_rule,
    value_mask,
)
from napari_rnon._planes import UserError


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("65535", ValueRule(65535.0, 65535.0)),
        (" 0 ", ValueRule(0.0, 0.0)),
        ("0..10", ValueRule(0.0, 10.0)),
        ("4000 to 65535", ValueRule(4000.0, 65535.0)),
        ("10..0", ValueRule(0.0, 10.0)),
        ("-1.5..2e3", ValueRule(-1.5, 2000.0)),
        ("NaN", ValueRule(nan=True)),
    ],
)
def test_parse_value_rule(text, rule):
    assert parse_value_rule(text) == rule


@pytest.mark.parametrize("text", ["", "abc", "1..", "1 - 2 - 3", "..5"])
def test_parse_value_rule_refuses_with_the_accepted_forms(text):
    with pytest.raises(UserError, match=r"65535.*0\.\.10.*nan"):
        parse_value_rule(text)


def test_value_mask_is_rnon_batch_mask_value_rule():
    """Equal to V, in any channel of an RGB image (rnon-batch's io.mask_window rule)."""
    img = np.zeros((4, 5, 3), np.uint8)
    img[1, 2, 0] = 255
    img[3, 4] = 255
    m = value_mask(img, parse_value_rule("255"), rgb=True)
    assert m.shape == (4, 5) and sorted(zip(*np.nonzero(m), strict=True)) == [(1, 2), (3, 4)]
    # the same as rnon-batch's rule, written out: (data == V).any(colour axis)
    np.testing.assert_array_equal(m, (img == 255).any(axis=-1))

    g = np.array([[0, 5, 10, 11], [65535, 3, 9, 10]], np.uint16)
    np.testing.assert_array_equal(
        value_mask(g, parse_value_rule("0..10")), [[1, 1, 1, 0], [0, 1, 1, 1]]
    )
    f = np.array([[np.nan, 1.0], [np.inf, np.nan]], np.float32)
    np.testing.assert_array_equal(value_mask(f, parse_value_rule("nan")), [[1, 0], [0, 1]])
    assert not value_mask(g, parse_value_rule("nan")).any()  # integers are never NaN


def _noisy_stack(n=5, shape=(64, 64), seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    base = 1000 + 3 * yy + 2 * xx
    return np.stack([base + rng.normal(0, 10, shape) for _ in range(n)]).astype(np.float32)


def test_hot_pixels_found_and_across_planes_keeps_only_persistent_ones():
    stack = _noisy_stack()
    hot, dead = (10, 20), (40, 7)
    stack[:, hot[0], hot[1]] += 400  # a hot camera pixel, in every plane
    stack[:, dead[0], dead[1]] = 0  # a dead one
    stack[2, 30, 30] += 400  # a bright speck in one plane only
    per_plane = hot_pixel_mask(stack, threshold=8)
    assert per_plane.shape == stack.shape
    assert per_plane[:, hot[0], hot[1]].all() and per_plane[:, dead[0], dead[1]].all()
    assert per_plane[2, 30, 30] and not per_plane[0, 30, 30]
    assert per_plane.sum() == 2 * 5 + 1  # no false alarm in the noise at 8 sigma
    across = hot_pixel_mask(stack, threshold=8, across_planes=True)
    assert across.shape == (64, 64)
    assert sorted(zip(*np.nonzero(across), strict=True)) == sorted([hot, dead])
    assert not across[30, 30]


def test_hot_pixels_on_a_flat_plane_and_bad_threshold():
    flat = np.full((16, 16), 7, np.uint16)
    assert not hot_pixel_mask(flat).any()
    flat[3, 3] = 9
    assert hot_pixel_mask(flat).sum() == 1  # any outlier on a flat plane
    with pytest.raises(UserError, match="above 0"):
        hot_pixel_mask(flat, threshold=0)


def test_grow_and_shrink_by_a_disk_per_plane():
    m = np.zeros((2, 9, 9), bool)
    m[0, 4, 4] = True
    grown = grow_shrink(m, 1)
    assert grown[0].sum() == 5 and not grown[1].any()  # a radius-1 disk is a cross
    assert grown[0, 3, 4] and grown[0, 4, 3] and not grown[0, 3, 3]
    assert grow_shrink(m, 2)[0].sum() == 13
    np.testing.assert_array_equal(grow_shrink(grown, -1), m)
    block = np.zeros((9, 9), bool)
    block[2:7, 2:7] = True
    assert grow_shrink(block, -1).sum() == 9 and grow_shrink(block, -3).sum() == 0
    np.testing.assert_array_equal(grow_shrink(block, 0), block)
