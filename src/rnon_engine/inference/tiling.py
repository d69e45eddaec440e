"""Mask-aware tiling: windows only where there are holes, each with context around them.

The plan for one plane (:func:`plan_tiles`):

1. The hole mask is reduced to a coarse grid (``cell`` px, a cell is a hole cell if any of
   its pixels is a hole) and its 8-connected components are labelled there. Every hole
   pixel belongs to exactly one component (its cell's label): the window(s) of that
   component write it, and no other window does.
2. A component whose box fits in a tile with ``margin`` px of context on every side
   (box side <= ``tile_size - 2*margin``) is *packed*: components are taken in raster order
   and each joins the open window whose box it grows least while the union still fits,
   else it opens a new window (IOPaint's crop-box-plus-margin, with nearby holes sharing a
   crop). The window is the union box plus ``margin`` on each side, rounded up to a
   multiple of ``multiple`` (the network's padding multiple) and at most ``tile_size``,
   centred on the box and shifted inside the image. One window fills the whole
   component, so there is no seam. With ``window_cost`` set, a component joins a window
   only when that costs no more than giving it its own window (cost = window area plus
   ``window_cost`` px² per window): methods whose cost is proportional to the window
   area and needing little context (the classical ones) then get about one small window
   per hole, while networks keep their few tile-sized windows.
3. Larger components are covered by one grid of ``tile_size`` windows over their boxes
   plus ``margin``, overlapping by ``overlap`` px, placed evenly (the last one flush with
   the end); overlapping large holes share windows. Windows that hold none of their hole
   pixels are dropped. The results are blended on the hole pixels with Gaussian weights
   (MONAI / nnU-Net: sigma = ``tile_size / 8`` around the window centre, never below
   1e-3), see :func:`gaussian_weights`.

When the plane fits in one tile and the windows would cover at least its area, the plan
is a single window over the whole plane instead.

Stage 2 of the network runs inside a window on boxes around the hole groups
(:func:`band_boxes`), from the same coarse components.

Windows that contain no hole pixel are never made, so the cost follows the holes, not the
image size. The plan holds only the coarse label grid (``1/cell**2`` of the image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

__all__ = [
    "Window",
    "TilePlan",
    "plan_tiles",
    "band_boxes",
    "gaussian_weights",
    "block_any",
    "hole_box",
    "grid_tile_for",
    "mean_width",
    "THIN_OVERLAP_DIVISOR",
]

WEIGHT_FLOOR = 1e-3


@dataclass(frozen=True)
class Window:
    """One window of a plane, in pixel coordinates (half-open).

    Attributes:
        y0, y1, x0, x1: The window.
        labels: Component labels whose hole pixels this window writes (empty for a
            blended window: it writes the hole pixels of every large component).
        blend: True for a window of the large components' grid (its result is blended
            with its neighbours' with :func:`gaussian_weights`); False when it writes alone.
        packed: True for a window of packed (small) components, sized to its holes plus
            ``margin`` (rounded up to ``multiple``); False for the large components'
            grid and for the single whole-plane window.
    """

    y0: int
    y1: int
    x0: int
    x1: int
    labels: tuple[int, ...]
    blend: bool = False
    packed: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self.y1 - self.y0, self.x1 - self.x0

    @property
    def slices(self) -> tuple[slice, slice]:
        """Slices selecting the window from an ``H×W[×C]`` array."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)


@dataclass
class TilePlan:
    """The windows of one plane and what each owns.

    Attributes:
        shape: ``(H, W)`` of the plane.
        cell: Side of a coarse-grid cell in pixels.
        labels: Coarse component labels, ``ceil(H/cell) × ceil(W/cell)`` int32, 0 = no hole.
        windows: Windows in processing order (packed first, then the blended grid row by
            row).
        tile_size, margin, overlap: The settings the plan was made with.
        large: Bool lookup by label: True for the components handled by the blended grid.
    """

    shape: tuple[int, int]
    cell: int
    labels: np.ndarray
    windows: list[Window] = field(default_factory=list)
    tile_size: int = 512
    margin: int = 64
    overlap: int = 128
    large: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=bool))

    def owned(self, window: Window, hole: np.ndarray) -> np.ndarray:
        """Bool ``h×w``: the hole pixels of ``window`` that it writes.

        Args:
            window: A window of this plan.
            hole: The plane's ``H×W`` bool hole mask.
        """
        c = self.cell
        lab = self.labels[
            window.y0 // c : (window.y1 - 1) // c + 1, window.x0 // c : (window.x1 - 1) // c + 1
        ]
        if window.blend:
            sel = self.large[lab]
        elif len(window.labels) == 1:
            sel = lab == window.labels[0]
        else:
            sel = np.isin(lab, np.asarray(window.labels, dtype=lab.dtype))
        up = np.repeat(np.repeat(sel, c, axis=0), c, axis=1)
        oy, ox = window.y0 % c, window.x0 % c
        h, w = window.shape
        return hole[window.slices] & up[oy : oy + h, ox : ox + w]


def block_any(hole: np.ndarray, cell: int) -> np.ndarray:
    """Reduce a bool ``H×W`` mask to ``ceil(H/cell)×ceil(W/cell)``: any pixel set."""
    h, w = hole.shape
    hc, wc = -(-h // cell), -(-w // cell)
    if h % cell or w % cell:
        padded = np.zeros((hc * cell, wc * cell), dtype=bool)
        padded[:h, :w] = hole
    else:
        padded = hole
    # Rows of cells first (whole image rows OR-ed together), then each cell's columns: as
    # one integer when a cell's row of bools is 1, 2, 4 or 8 bytes. Far faster than
    # numpy's reduction over the axes (1, 3) at once (about 1 ms instead of 40 on 4096²).
    rows = np.logical_or.reduce(padded.reshape(hc, cell, wc * cell), axis=1)
    if cell in (1, 2, 4, 8):
        return rows.view(np.uint8).view(f"u{cell}") != 0
    return rows.reshape(hc, wc, cell).any(axis=2)


def _components(hole: np.ndarray, cell: int) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """Coarse 8-connected hole components: the label grid and each one's pixel box.

    Returns:
        ``ceil(H/cell)×ceil(W/cell)`` int32 labels (0 = no hole) and one
        ``(y0, x0, y1, x1, label)`` box per component, clipped to the plane.
    """
    h, w = hole.shape
    labels, _ = ndimage.label(block_any(hole, cell), structure=np.ones((3, 3), dtype=bool))
    labels = labels.astype(np.int32, copy=False)
    boxes = []
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        y0, y1 = sl[0].start * cell, min(sl[0].stop * cell, h)
        x0, x1 = sl[1].start * cell, min(sl[1].stop * cell, w)
        boxes.append((y0, x0, y1, x1, lab))
    return labels, boxes


def band_boxes(
    hole: np.ndarray, halo: int, cell: int = 8, call_cost: int = 64 * 64
) -> list[tuple[slice, slice]]:
    """Disjoint boxes covering every hole pixel of ``hole`` together with its halo.

    The boxes of the hole's coarse components (as in :func:`plan_tiles`), grown by
    ``halo`` and clipped to the plane, are merged while any two overlap or touch, or while
    merging costs less than the two boxes' area plus ``call_cost`` px² (the fixed cost of
    one more call). Every hole pixel's ``halo`` neighbourhood then lies inside exactly one
    box, so a network whose receptive radius is ``halo`` gives on the box what it gives on
    the whole plane.

    Args:
        hole: ``H×W`` bool, True = pixel to repair.
        halo: Pixels added around each component's box.
        cell: Coarse-grid cell in pixels.
        call_cost: Fixed cost of one box, in px².

    Returns:
        ``(rows, cols)`` slice pairs, one per box.
    """
    h, w = hole.shape
    _, comps = _components(hole, cell)
    boxes = [
        [max(0, y0 - halo), max(0, x0 - halo), min(h, y1 + halo), min(w, x1 + halo)]
        for y0, x0, y1, x1, _ in comps
    ]
    merged = True
    while merged and len(boxes) > 1:
        merged = False
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                p, q = boxes[a], boxes[b]
                u = [min(p[0], q[0]), min(p[1], q[1]), max(p[2], q[2]), max(p[3], q[3])]
                touch = p[0] <= q[2] and q[0] <= p[2] and p[1] <= q[3] and q[1] <= p[3]
                area = (u[2] - u[0]) * (u[3] - u[1])
                separate = sum((r[2] - r[0]) * (r[3] - r[1]) for r in (p, q)) + call_cost
                if touch or area <= separate:
                    boxes[a] = u
                    del boxes[b]
                    merged = True
                    break
            if merged:
                break
    return [(slice(y0, y1), slice(x0, x1)) for y0, x0, y1, x1 in boxes]


def _pixel_box(
    hole: np.ndarray,
    labels: np.ndarray,
    cell: int,
    box: tuple[int, int, int, int],
    labs: list[int],
) -> tuple[int, int, int, int]:
    """The box of the hole pixels of components ``labs`` inside their cell box ``box``."""
    y0, x0, y1, x1 = box
    lab = labels[y0 // cell : -(-y1 // cell), x0 // cell : -(-x1 // cell)]
    sel = np.isin(lab, labs) if len(labs) > 1 else lab == labs[0]
    up = np.repeat(np.repeat(sel, cell, axis=0), cell, axis=1)[: y1 - y0, : x1 - x0]
    mine = hole[y0:y1, x0:x1] & up
    rows = np.flatnonzero(mine.any(axis=1))
    cols = np.flatnonzero(mine.any(axis=0))
    return y0 + int(rows[0]), x0 + int(cols[0]), y0 + int(rows[-1]) + 1, x0 + int(cols[-1]) + 1


def _fit_size(need: int, multiple: int, tile: int, limit: int) -> int:
    """``need`` rounded up to a multiple of ``multiple``, at most ``tile`` and ``limit``."""
    return min(-(-need // multiple) * multiple, tile, limit)


def _place(lo: int, hi: int, size: int, limit: int) -> tuple[int, int]:
    """A ``size`` interval centred on ``[lo, hi)``, shifted inside ``[0, limit)``."""
    start = (lo + hi - size) // 2
    start = min(max(start, 0), limit - size)
    return start, start + size


def _positions(lo: int, hi: int, size: int, stride: int) -> list[int]:
    """Starts of ``size`` windows covering ``[lo, hi)`` evenly, overlapping by >= size-stride."""
    length = hi - lo
    if length <= size:
        return [lo]
    n = math.ceil((length - size) / stride) + 1
    return [lo + round(i * (length - size) / (n - 1)) for i in range(n)]


def plan_tiles(
    hole: np.ndarray,
    tile_size: int = 512,
    margin: int | None = None,
    overlap: int | None = None,
    multiple: int = 1,
    cell: int = 8,
    window_cost: int | None = None,
    grid_tile: int | str | None = None,
    fit_pixels: bool = False,
) -> TilePlan:
    """Plan the windows that cover every hole pixel of one plane.

    Args:
        hole: ``H×W`` bool, True = pixel to repair.
        tile_size: Largest window side (windows are ``tile_size`` square or smaller).
        margin: Valid context kept around packed holes (default ``tile_size // 8``).
        overlap: Overlap of the windows over a large component (default ``tile_size // 4``).
        multiple: Packed windows are rounded up to a multiple of this (the network pads its
            input to it anyway, so the extra context is free).
        cell: Coarse-grid cell in pixels.
        window_cost: None: a component joins the open window it grows least whenever
            the union still fits a tile. An int: it joins only when the union window's
            area is at most the two separate windows' areas plus ``window_cost`` (the
            fixed cost of one window, in px²); otherwise it gets its own window.
        grid_tile: Side of the blended windows over large components: None = ``tile_size``;
            ``"auto"`` = from the mean width of the large components on the coarse grid
            (:func:`mean_width`, :func:`grid_tile_for`), so that long thin strokes get
            small windows; an int
            = that side (at most ``tile_size``). Their overlap is ``overlap`` scaled by
            ``grid_tile / tile_size``, and divided by :data:`THIN_OVERLAP_DIVISOR` for
            ``"auto"`` windows smaller than ``tile_size``.
        fit_pixels: Size and centre each packed window on the box of its hole pixels
            rather than on its components' coarse cells (which can be ``cell - 1`` px
            larger on each side): the same ``margin`` of context around every hole pixel in
            a smaller window. Which components share a window does not change.

    Returns:
        The :class:`TilePlan`. No window holds zero hole pixels.
    """
    h, w = hole.shape
    tile = int(tile_size)
    margin = tile // 8 if margin is None else int(margin)
    overlap = tile // 4 if overlap is None else int(overlap)
    if tile < 16 or not 0 <= 2 * margin < tile or not 0 <= overlap < tile:
        raise ValueError(
            f"need tile_size >= 16, 0 <= 2*margin < tile_size and 0 <= overlap < tile_size; "
            f"got tile_size={tile}, margin={margin}, overlap={overlap}"
        )
    labels, boxes = _components(hole, cell)
    n = len(boxes)
    plan = TilePlan((h, w), cell, labels, tile_size=tile, margin=margin, overlap=overlap)
    if n == 0:
        return plan
    core = tile - 2 * margin
    boxes.sort()
    # Packed components: best-fit into open windows (raster order).
    open_: list[list] = []  # [y0, x0, y1, x1, [labels]]
    closed: list[list] = []
    large = []

    def win_area(y0: int, x0: int, y1: int, x1: int) -> int:
        return _fit_size(y1 - y0 + 2 * margin, multiple, tile, h) * _fit_size(
            x1 - x0 + 2 * margin, multiple, tile, w
        )

    # With a window cost, a window whose bottom is this far above a new box can no longer
    # profitably take it (a heuristic that keeps the open list short; any plan is valid).
    reach = core if window_cost is None else 2 * margin + math.isqrt(window_cost) + cell
    for y0, x0, y1, x1, lab in boxes:
        if y1 - y0 > core or x1 - x0 > core:
            large.append((y0, x0, y1, x1, lab))
            continue
        still = []
        for win in open_:
            keep = y0 - win[0] <= core and (window_cost is None or y0 - win[2] <= reach)
            (still if keep else closed).append(win)
        open_ = still
        own = None if window_cost is None else win_area(y0, x0, y1, x1) + window_cost
        best, best_area = None, None
        for win in open_:
            uy0, ux0 = min(win[0], y0), min(win[1], x0)
            uy1, ux1 = max(win[2], y1), max(win[3], x1)
            if uy1 - uy0 <= core and ux1 - ux0 <= core:
                if own is None:
                    area = (uy1 - uy0) * (ux1 - ux0)
                else:
                    area = win_area(uy0, ux0, uy1, ux1) - win_area(*win[:4])
                    if area > own:
                        continue
                if best_area is None or area < best_area:
                    best, best_area = win, area
        if best is None:
            open_.append([y0, x0, y1, x1, [lab]])
        else:
            best[0], best[1] = min(best[0], y0), min(best[1], x0)
            best[2], best[3] = max(best[2], y1), max(best[3], x1)
            best[4].append(lab)
    for y0, x0, y1, x1, labs in closed + open_:
        if fit_pixels:
            y0, x0, y1, x1 = _pixel_box(hole, labels, cell, (y0, x0, y1, x1), labs)
        sh = _fit_size(y1 - y0 + 2 * margin, multiple, tile, h)
        sw = _fit_size(x1 - x0 + 2 * margin, multiple, tile, w)
        wy0, wy1 = _place(y0, y1, sh, h)
        wx0, wx1 = _place(x0, x1, sw, w)
        plan.windows.append(Window(wy0, wy1, wx0, wx1, tuple(sorted(labs)), packed=True))
    plan.windows.sort(key=lambda win: (win.y0, win.x0))
    # Large components: one grid of overlapping tiles over the plane, kept where they hold
    # large-component hole pixels, blended (overlapping large holes share their windows).
    if large:
        plan.large = np.zeros(n + 1, dtype=bool)
        plan.large[[lab for *_, lab in large]] = True
        ry0 = max(0, min(b[0] for b in large) - margin)
        rx0 = max(0, min(b[1] for b in large) - margin)
        ry1 = min(h, max(b[2] for b in large) + margin)
        rx1 = min(w, max(b[3] for b in large) + margin)
        gt = tile
        if grid_tile == "auto":
            gt = grid_tile_for(mean_width(plan.large[labels]) * cell, margin, multiple, tile)
        elif grid_tile is not None:
            gt = min(tile, int(grid_tile))
        over = overlap * gt // tile
        if grid_tile == "auto" and gt < tile:  # thin holes: context across them, not along
            over //= THIN_OVERLAP_DIVISOR
        stride = gt - over
        th, tw = min(gt, h), min(gt, w)
        for ty in _positions(ry0, ry1, th, stride):
            ty = min(ty, h - th)
            for tx in _positions(rx0, rx1, tw, stride):
                tx = min(tx, w - tw)
                win = Window(ty, ty + th, tx, tx + tw, (), blend=True)
                if plan.owned(win, hole).any():
                    plan.windows.append(win)
    if (
        h <= tile
        and w <= tile
        and sum(a * b for a, b in (win.shape for win in plan.windows)) >= h * w
    ):
        # The whole plane fits in one tile and costs no more: one untiled pass.
        plan.large = np.zeros(n + 1, dtype=bool)
        plan.windows = [Window(0, h, 0, w, tuple(range(1, n + 1)))]
    return plan


#: Thin large components: the blended window side is this many times their thickness
#: plus twice the margin, at least ``GRID_TILE_MIN`` (see :func:`grid_tile_for`).
GRID_TILE_FACTOR = 4
GRID_TILE_MIN = 128
#: ``"auto"`` blended windows over thin holes overlap by ``overlap * side / tile_size``
#: divided by this (16 px for 128 px windows with the defaults, 1/8 of their side): on
#: issue 16's 4096² strokes 1.4× fewer window pixels (stage 1 and 2 CPU 32 → 24-26 s)
#: for -0.010 ± 0.019 dB hole PSNR on 20 validation photographs (docs/benchmarks.md).
THIN_OVERLAP_DIVISOR = 2


def mean_width(region: np.ndarray) -> int:
    """Mean width of the strokes of a bool mask, in its pixels: area / skeleton length.

    A long scratch k px wide gives about k wherever it crosses others; a round blob gives
    about its diameter over 1.5 or more. 0 for an empty mask.
    """
    from skimage.morphology import skeletonize

    area = int(region.sum())
    if area == 0:
        return 0
    return int(round(area / max(1, int(skeletonize(region).sum()))))


def grid_tile_for(thickness: int, margin: int, multiple: int, tile: int) -> int:
    """Side of the blended windows over large components ``thickness`` px thick.

    ``GRID_TILE_FACTOR * thickness + 2 * margin`` rounded up to ``multiple``, between
    ``GRID_TILE_MIN`` and ``tile``: a long scratch needs context across it, not along it,
    and a window much wider than the scratch mostly computes pixels nobody reads.
    """
    side = GRID_TILE_FACTOR * thickness + 2 * margin
    side = -(-side // max(1, multiple)) * max(1, multiple)
    return int(min(tile, max(GRID_TILE_MIN, side)))


def gaussian_weights(shape: tuple[int, int], sigma_scale: float = 0.125) -> np.ndarray:
    """Blending weights of a window: a Gaussian centred on it, floored at 1e-3.

    Args:
        shape: ``(h, w)`` of the window.
        sigma_scale: sigma as a fraction of each side (MONAI's default 0.125 = side/8).

    Returns:
        float32 ``h×w`` weights in ``[1e-3, 1]``, 1 at the centre.
    """
    axes = []
    for n in shape:
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2
        axes.append(np.exp(-0.5 * (x / max(sigma_scale * n, 1e-6)) ** 2))
    wts = np.outer(axes[0], axes[1])
    wts /= wts.max()
    return np.maximum(wts, WEIGHT_FLOOR).astype(np.float32)


def hole_box(hole: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)``: the box of the hole pixels of ``hole``; None without any.

    Args:
        hole: ``h×w`` bool, or a batch ``N×h×w`` (the box of all its holes together).
    """
    if hole.ndim == 3:
        hole = hole.any(axis=0)
    rows = np.flatnonzero(hole.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(hole.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
