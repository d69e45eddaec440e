import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnon_engine.inference.tiling import block_any, gaussian_weights, plan_tiles


def _coverage(plan, hole):
    """(times written by a packed window, times written by a blended window) per pixel."""
    packed = np.zeros(hole.shape, np.int32)
    blended = np.zeros(hole.shape, np.int32)
    for win in plan.windows:
        owned = plan.owned(win, hole)
        assert owned.any(), "a window without hole pixels was planned"
        (blended if win.blend else packed)[win.slices] += owned
    return packed, blended


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 300),
    w=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(["spots", "band", "random"]),
    tile=st.sampled_from([32, 64, 128]),
    window_cost=st.sampled_from([None, 0, 1024]),
    grid_tile=st.sampled_from([None, "auto", 24]),
    fit_pixels=st.booleans(),
)
def test_every_hole_pixel_has_one_owner(
    h, w, seed, kind, tile, window_cost, grid_tile, fit_pixels
):
    rng = np.random.default_rng(seed)
    hole = np.zeros((h, w), bool)
    if kind == "spots":
        for _ in range(rng.integers(1, 20)):
            y, x = rng.integers(0, h), rng.integers(0, w)
            hole[y : y + rng.integers(1, 6), x : x + rng.integers(1, 6)] = True
    elif kind == "band":
        y = rng.integers(0, h)
        hole[y : y + rng.integers(1, 40)] = True
    else:
        hole = rng.random((h, w)) < 0.2
    plan = plan_tiles(
        hole,
        tile,
        multiple=16,
        window_cost=window_cost,
        grid_tile=grid_tile,
        fit_pixels=fit_pixels,
    )
    packed, blended = _coverage(plan, hole)
    # a hole pixel is written by exactly one packed window, or blended from >= 1 grid window
    assert (((packed == 1) & (blended == 0)) | ((packed == 0) & (blended >= 1)))[hole].all()
    assert (packed[~hole] == 0).all() and (blended[~hole] == 0).all()
    for win in plan.windows:
        assert 0 <= win.y0 < win.y1 <= h and 0 <= win.x0 < win.x1 <= w
        assert win.shape[0] <= tile and win.shape[1] <= tile


def test_empty_mask_plans_nothing():
    assert plan_tiles(np.zeros((100, 100), bool), 64).windows == []


def test_packed_windows_keep_margin_and_skip_empty_areas():
    hole = np.zeros((1000, 1000), bool)
    hole[500:505, 500:505] = True
    plan = plan_tiles(hole, 128, margin=16, multiple=32)
    assert len(plan.windows) == 1
    win = plan.windows[0]
    assert win.y0 <= 500 - 16 and win.y1 >= 505 + 16
    assert win.shape == (64, 64)  # 5 px hole (8 px cell) + 2*16 margin -> 40 -> multiple of 32


def test_pixel_fit_keeps_the_margin_around_every_hole_pixel_in_smaller_windows():
    """The same packing; windows sized to the hole pixels, still margin px around each."""
    rng = np.random.default_rng(4)
    hole = np.zeros((600, 600), bool)
    yy, xx = np.mgrid[:600, :600]
    for _ in range(40):
        cy, cx, r = rng.integers(40, 560), rng.integers(40, 560), rng.integers(1, 9)
        hole |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    margin = 24
    cells = plan_tiles(hole, 512, margin, multiple=8, window_cost=1024)
    pixels = plan_tiles(hole, 512, margin, multiple=8, window_cost=1024, fit_pixels=True)
    by_labels = [sorted(p.windows, key=lambda w: w.labels) for p in (cells, pixels)]
    assert [w.labels for w in by_labels[0]] == [w.labels for w in by_labels[1]]
    area = [sum(a * b for a, b in (w.shape for w in p.windows)) for p in (cells, pixels)]
    assert area[1] < area[0]
    for ref, win in zip(*by_labels, strict=True):
        assert win.shape[0] <= ref.shape[0] and win.shape[1] <= ref.shape[1]
        ys, xs = np.nonzero(pixels.owned(win, hole))
        ys, xs = ys + win.y0, xs + win.x0
        # margin px of context on every side (the spots lie >= 32 px inside the image)
        assert ys.min() - win.y0 >= margin and win.y1 - 1 - ys.max() >= margin
        assert xs.min() - win.x0 >= margin and win.x1 - 1 - xs.max() >= margin
    packed, _ = _coverage(pixels, hole)
    assert (packed[hole] == 1).all()


def test_window_cost_gives_far_apart_holes_their_own_small_windows():
    """Spots 40 px apart: packing fills tiles; with a window cost each gets a small window."""
    hole = np.zeros((400, 400), bool)
    for y in range(20, 400, 40):
        for x in range(20, 400, 40):
            hole[y : y + 4, x : x + 4] = True
    packed = plan_tiles(hole, 256, margin=8)
    own = plan_tiles(hole, 256, margin=8, window_cost=0)
    area = [sum(a * b for a, b in (w.shape for w in p.windows)) for p in (packed, own)]
    assert len(own.windows) == 100 and all(w.shape == (24, 24) for w in own.windows)
    assert area[1] < area[0] / 2 and area[1] == 100 * 24 * 24
    # a large window cost lets neighbours share windows again, never costing more than
    # the windows' areas plus their fixed cost
    shared = plan_tiles(hole, 256, margin=8, window_cost=64 * 64)
    cost = [sum(a * b + 64 * 64 for a, b in (w.shape for w in p.windows)) for p in (own, shared)]
    assert len(shared.windows) < 100 and cost[1] <= cost[0]


def test_large_hole_uses_overlapping_blended_windows():
    hole = np.zeros((300, 300), bool)
    hole[140:160, :] = True  # a band wider than any tile
    plan = plan_tiles(hole, 64, margin=8, overlap=16)
    assert all(w.blend for w in plan.windows)
    xs = sorted({w.x0 for w in plan.windows})
    assert xs[0] == 0 and max(w.x1 for w in plan.windows) == 300
    assert all(b - a <= 64 - 16 for a, b in zip(xs, xs[1:], strict=False))
    # rows far from the band are never covered
    assert min(w.y0 for w in plan.windows) >= 140 - 64


def test_auto_grid_tile_follows_the_thickness_of_large_holes():
    from rnon_engine.inference.tiling import GRID_TILE_MIN, THIN_OVERLAP_DIVISOR, grid_tile_for

    thin = np.zeros((1000, 1000), bool)
    for k in range(-6, 6):  # a diagonal scratch about 8 px wide across the plane
        idx = np.arange(1000 - abs(k))
        thin[idx + max(k, 0), idx + max(-k, 0)] = True
    thick = np.zeros((1000, 1000), bool)
    thick[300:700, 100:900] = True  # a 400 px blob
    for hole, small in ((thin, True), (thick, False)):
        fixed = plan_tiles(hole, 512, margin=24, multiple=16)
        auto = plan_tiles(hole, 512, margin=24, multiple=16, grid_tile="auto")
        sides = {max(w.shape) for w in auto.windows}
        if small:
            # 4 * mean width (coarse cells: about 16-24 px) + 2 * margin, rounded up to 16
            assert len(sides) == 1 and GRID_TILE_MIN <= sides.pop() <= 160
            area = [sum(a * b for a, b in (w.shape for w in p.windows)) for p in (fixed, auto)]
            assert area[1] < area[0] / 2  # the small windows compute far fewer pixels
            # ... and overlap less: at least 128 * side // 512 // THIN_OVERLAP_DIVISOR px
            # (windows are spread evenly: their starts step by at most side - that), more
            # than the tile grid's scaled overlap allows; the same windows as an explicit
            # grid_tile with that overlap.
            side = max(auto.windows[0].shape)
            over = 128 * side // 512 // THIN_OVERLAP_DIVISOR
            ys = sorted({w.y0 for w in auto.windows})
            step = max(b - a for a, b in zip(ys, ys[1:], strict=False))
            assert side - 128 * side // 512 < step <= side - over
            same = plan_tiles(
                hole, 512, margin=24, overlap=128 // THIN_OVERLAP_DIVISOR, multiple=16,
                grid_tile=side,
            )
            assert same.windows == auto.windows
        else:
            assert sides == {512} and len(auto.windows) == len(fixed.windows)
    # Crossing scratches keep their width; a blob is wide.
    from rnon_engine.inference.tiling import mean_width

    cross = np.zeros((60, 60), bool)
    cross[29:32, :] = cross[:, 29:32] = True
    assert mean_width(cross) == 3 and mean_width(np.ones((30, 30), bool)) >= 15
    assert mean_width(np.zeros((5, 5), bool)) == 0
    assert grid_tile_for(8, 24, 16, 512) == GRID_TILE_MIN
    assert grid_tile_for(40, 24, 16, 512) == 208  # 4*40 + 48 rounded up to 16
    assert grid_tile_for(400, 24, 16, 512) == 512


def test_band_boxes_hold_every_hole_pixel_with_its_halo():
    from rnon_engine.inference.tiling import band_boxes

    rng = np.random.default_rng(1)
    hole = rng.random((150, 170)) < 0.002
    halo = 10
    boxes = band_boxes(hole, halo)
    cover = np.zeros(hole.shape, np.int32)
    for ys, xs in boxes:
        cover[ys, xs] += 1
    assert cover.max() == 1  # disjoint
    ys, xs = np.nonzero(hole)
    for y, x in zip(ys, xs, strict=True):  # each hole pixel's halo lies inside one box
        inside = [
            b
            for b in boxes
            if b[0].start <= max(0, y - halo)
            and min(150, y + halo + 1) <= b[0].stop
            and b[1].start <= max(0, x - halo)
            and min(170, x + halo + 1) <= b[1].stop
        ]
        assert len(inside) == 1


def test_small_plane_single_window():
    hole = np.zeros((50, 60), bool)
    hole[10:30, 5:55] = True
    plan = plan_tiles(hole, 64)
    assert len(plan.windows) == 1 and plan.windows[0].shape == (50, 60)


def test_gaussian_weights():
    wts = gaussian_weights((64, 48))
    assert wts.dtype == np.float32 and wts.shape == (64, 48)
    assert wts.max() == pytest.approx(1.0, abs=1e-3) and wts.min() == pytest.approx(1e-3)
    assert np.allclose(wts, wts[::-1]) and np.allclose(wts, wts[:, ::-1])


def test_block_any():
    hole = np.zeros((10, 13), bool)
    hole[9, 12] = True
    c = block_any(hole, 4)
    assert c.shape == (3, 4) and c.sum() == 1 and c[2, 3]


@pytest.mark.parametrize("cell", [1, 2, 3, 4, 5, 8, 16])
@pytest.mark.parametrize("shape", [(64, 64), (37, 53), (8, 120)])
def test_block_any_matches_the_cellwise_definition(cell, shape):
    rng = np.random.default_rng(cell * 100 + shape[1])
    hole = rng.random(shape) < 0.01
    hole[-1, -1] = True  # the last, possibly partial, cell
    got = block_any(hole, cell)
    hc, wc = -(-shape[0] // cell), -(-shape[1] // cell)
    want = np.array(
        [
            [hole[i * cell : (i + 1) * cell, j * cell : (j + 1) * cell].any() for j in range(wc)]
            for i in range(hc)
        ]
    )
    assert got.dtype == bool and got.shape == (hc, wc)
    np.testing.assert_array_equal(got, want)


def test_bad_settings():
    with pytest.raises(ValueError):
        plan_tiles(np.ones((10, 10), bool), 64, margin=40)
