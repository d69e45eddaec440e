"""Biharmonic fill of many small hole groups in one sparse solve.

:func:`skimage.restoration.inpaint_biharmonic` solves the biharmonic equation
``Δ²u = 0`` on the hole pixels with the known pixels as boundary values, one region at a
time; the Python work per region (2-4 ms) makes 20 000 scattered dead pixels cost about
half a minute. Here the same equations, with the same 13-point stencil (20 at the pixel,
-8 at its 4 neighbours, 2 at the 4 diagonal ones, 1 two pixels away along the axes), are
assembled for every hole pixel of a plane at once and solved with one sparse LU
factorisation (:func:`scipy.sparse.linalg.splu`); for groups at least 3 px from each other
and from the image's edge the result equals scikit-image's (``tests/test_auto.py``).
Pixels outside the image are mirrored at its edge. The fill is clipped to the range of the
plane's known values.

The ``"auto"`` method uses it for the groups it routes to ``"biharmonic"``: its groups are
at least 3 known pixels apart (:data:`rnon_engine.inference.routing.MERGE_GAP`), so a
group's stencil never reaches another hole.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rnon_engine.inference.layout import PlaneLayout

__all__ = ["STENCIL", "fill_biharmonic", "fill_windows", "solve_plane", "solve_windows"]

#: ``(dy, dx, coefficient)`` of the discrete biharmonic operator.
STENCIL: tuple[tuple[int, int, float], ...] = (
    (0, 0, 20.0),
    (-1, 0, -8.0),
    (1, 0, -8.0),
    (0, -1, -8.0),
    (0, 1, -8.0),
    (-1, -1, 2.0),
    (-1, 1, 2.0),
    (1, -1, 2.0),
    (1, 1, 2.0),
    (-2, 0, 1.0),
    (2, 0, 1.0),
    (0, -2, 1.0),
    (0, 2, 1.0),
)


#: Problems with at most this many pixels (windows) number their hole pixels in an index
#: array of their shape (8 bytes a pixel); larger ones (whole planes) look them up by search.
_DENSE_INDEX_MAX = 1 << 22


def _nonzero(mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """``np.nonzero(mask)``: the same indices in the same order.

    Several times faster on a large sparse mask: numpy's N-d nonzero is much slower than
    its flat one.
    """
    return np.unravel_index(np.flatnonzero(mask), mask.shape)


def _mirror(i: np.ndarray, n: int) -> np.ndarray:
    i = np.abs(i)
    return np.where(i >= n, 2 * (n - 1) - i, i).clip(0, n - 1)


def _known_range(values: np.ndarray, hole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel min and max of the known pixels, without copying the plane.

    The plain min / max of the plane is the known pixels' one unless only hole pixels
    (whose values are anything, NaN included) hold it; only then is the slower masked
    reduction needed.
    """
    # Rows first (an elementwise reduction over whole rows), then the columns: numpy's
    # reduction over both axes at once is 20-50x slower on an H×W×C plane.
    lo, hi = values.min(axis=0).min(axis=0), values.max(axis=0).max(axis=0)
    ys, xs = _nonzero(hole)
    inside = values[ys, xs]
    masked = np.isnan(lo) | np.isnan(hi) if values.dtype.kind == "f" else np.zeros(lo.shape, bool)
    for c in np.flatnonzero(~masked):
        for bound in (lo[c], hi[c]):
            at = inside[:, c] == bound
            if at.any() and not _known_pixel_holds(values[..., c], bound, ys[at]):
                masked[c] = True
    if masked.any():
        if values.dtype.kind == "f":
            low, high = np.inf, -np.inf
        else:
            info = np.iinfo(values.dtype)
            low, high = info.max, info.min
        known = ~hole[..., None]
        lo = values.min(axis=(0, 1), where=known, initial=low)
        hi = values.max(axis=(0, 1), where=known, initial=high)
    return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)


#: Rows of a plane compared at a time by :func:`_known_pixel_holds`.
_ROW_BLOCK = 256


def _known_pixel_holds(channel: np.ndarray, value: Any, rows: np.ndarray) -> bool:
    """Whether a pixel of ``channel`` outside the hole pixels at ``rows`` equals ``value``.

    Args:
        channel: ``H×W`` plane of one channel.
        value: The value sought (the channel's min or max).
        rows: Sorted rows of the hole pixels that hold ``value``.

    A band of rows at a time, stopping at the first band with more such pixels than hole
    pixels: an image's extremes are usually held by many known pixels (saturated
    areas), found in the first band instead of a comparison of the whole plane.
    """
    for top in range(0, channel.shape[0], _ROW_BLOCK):
        bottom = top + _ROW_BLOCK
        held = np.count_nonzero(channel[top:bottom] == value)
        in_holes = np.searchsorted(rows, bottom) - np.searchsorted(rows, top)
        if held > in_holes:
            return True
    return False


def _range_near(values: np.ndarray, hole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel min and max of the known pixels next to the holes (8 neighbours).

    A part of the plane's known pixels, found without reading the whole plane: a fill
    within this range is within the plane's known range too.
    """
    h, w = hole.shape
    ys, xs = _nonzero(hole)
    lo = np.full(values.shape[-1], np.inf)
    hi = np.full(values.shape[-1], -np.inf)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            yy, xx = _mirror(ys + dy, h), _mirror(xs + dx, w)
            known = ~hole[yy, xx]
            if known.any():
                near = values[yy[known], xx[known]].astype(np.float64)
                lo = np.minimum(lo, near.min(axis=0))
                hi = np.maximum(hi, near.max(axis=0))
    return lo, hi


def solve_plane(values: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Biharmonic values of the hole pixels of one plane.

    Args:
        values: ``H×W×C``, any real dtype (hole values are not read; the known values
            the stencil reaches are gathered as float64).
        hole: ``H×W`` bool, True = fill.

    Returns:
        ``n×C`` float64: the fills of ``np.nonzero(hole)``'s pixels, in that order.
    """
    return solve_windows(values[None], hole[None])


#: SuperLU's options for a symmetric positive definite matrix (:func:`solve_windows`).
_SYMMETRIC = {"SymmetricMode": True}


def solve_windows(values: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """Biharmonic values of the hole pixels of several windows, in one sparse solve.

    Each window is its own problem (mirrored at its own edges); their equations form one
    block-diagonal system, so a batch of small windows costs one factorisation instead of
    one per window (the Python work per window was most of a small window's cost).

    Args:
        values: ``N×H×W×C``, any real dtype (hole values are not read).
        holes: ``N×H×W`` bool, True = fill.

    Returns:
        ``n×C`` float64: the fills of ``np.nonzero(holes)``'s pixels, in that order.
    """
    from scipy import sparse
    from scipy.sparse.linalg import splu

    _, h, w = holes.shape
    bs, ys, xs = _nonzero(holes)
    n = ys.size
    if holes.size <= _DENSE_INDEX_MAX:
        # Small windows: each hole pixel's equation number in an array of their shape.
        index = np.full(holes.shape, -1, dtype=np.int64)
        index[bs, ys, xs] = np.arange(n)

        def lookup(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
            return index[bs, yy, xx]

    else:
        # A large plane: neighbours are looked up among the holes' sorted flat indices
        # (np.nonzero's order), without a plane-sized index array.
        flat = np.ravel_multi_index((bs, ys, xs), holes.shape)

        def lookup(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
            want = np.ravel_multi_index((bs, yy, xx), holes.shape)
            at = np.minimum(np.searchsorted(flat, want), n - 1)
            return np.where(flat[at] == want, at, -1)

    # The stencil reaches 2 px: holes at least that far from every edge need no mirroring.
    inside = n and ys.min() >= 2 and xs.min() >= 2 and ys.max() < h - 2 and xs.max() < w - 2

    rows, cols, data = [], [], []
    rhs = np.zeros((n, values.shape[-1]), dtype=np.float64)
    ids = np.arange(n)
    for dy, dx, coef in STENCIL:
        if inside:
            yy, xx = ys + dy, xs + dx
        else:
            yy, xx = _mirror(ys + dy, h), _mirror(xs + dx, w)
        j = lookup(yy, xx)
        unknown = j >= 0
        rows.append(ids[unknown])
        cols.append(j[unknown])
        data.append(np.full(int(unknown.sum()), coef))
        known = ~unknown
        rhs[known] -= coef * values[bs[known], yy[known], xx[known]].astype(np.float64)
    a = sparse.csc_matrix(
        (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    if inside:
        # No mirrored equation: the matrix is the biharmonic operator's rows and columns of
        # the hole pixels, symmetric positive definite, factorised without pivoting in a
        # symmetric order (faster; the same solution within float64 rounding).
        lu = splu(a, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options=_SYMMETRIC)
    else:
        lu = splu(a)
    return lu.solve(rhs).reshape(n, -1)


def fill_windows(images: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """Biharmonic fill of a batch of float windows, each clipped to its known range.

    What :func:`fill_biharmonic` gives window by window (``channel_axis`` first), in one
    solve (:func:`solve_windows`). Windows without a hole or without a known pixel are
    returned as they are.

    Args:
        images: ``N×C×H×W`` float (hole values are not read).
        holes: ``N×H×W`` bool, True = fill.

    Returns:
        A new ``N×C×H×W`` array of the images' dtype.
    """
    out = np.array(images, copy=True)
    some = holes.any(axis=(1, 2)) & ~holes.all(axis=(1, 2))
    if not some.any():
        return out
    pick = np.flatnonzero(some)
    vals = images[pick].transpose(0, 2, 3, 1)
    hole = holes[pick]
    known = ~hole[..., None]
    # Per window and channel; rows then columns (see _known_range).
    lo = np.where(known, vals, np.inf).min(axis=1).min(axis=1).astype(np.float64)
    hi = np.where(known, vals, -np.inf).max(axis=1).max(axis=1).astype(np.float64)
    bs, ys, xs = _nonzero(hole)
    fill = np.clip(solve_windows(vals, hole), lo[bs], hi[bs])
    target = out.transpose(0, 2, 3, 1)  # a view: writes land in out
    target[pick[bs], ys, xs] = fill.astype(out.dtype)
    return out


def fill_biharmonic(
    image: np.ndarray,
    mask: np.ndarray,
    channel_axis: int | str | None = "auto",
    *,
    in_place: bool = False,
) -> np.ndarray:
    """Fill ``image`` where ``mask`` is nonzero with the biharmonic solution, in its units.

    The image and mask must already be accepted by :meth:`Inpainter.inpaint` (same
    layouts: a mask of the spatial shape or one per plane; RGBA keeps its alpha).

    Args:
        image: The image.
        mask: Nonzero = fill.
        channel_axis: As :meth:`Inpainter.inpaint`'s.
        in_place: Write the fills into ``image`` (a numpy array) instead of a copy.

    Returns:
        A new array of the image's dtype (``image`` itself when ``in_place``); pixels
        outside the mask are unchanged. Integer fills are rounded; every fill is clipped
        to the range of its plane's known values.
    """
    image = np.asarray(image)
    holes = np.asarray(mask) != 0
    out = image if in_place else image.copy()
    if not holes.any():
        return out
    layout = PlaneLayout.of(image.shape, channel_axis)
    ch = layout.channel_axis
    view, oview = layout.channels_last(image), layout.channels_last(out)
    per_plane = holes.ndim > 2
    for idx in layout.planes:
        hole = holes[idx] if per_plane else holes
        if not hole.any():
            continue
        plane = view[idx][..., None] if ch is None else view[idx]
        nchan = 3 if plane.shape[-1] == 4 else plane.shape[-1]
        vals = plane[..., :nchan]  # read in place: solve_plane gathers only the stencil's
        fill = solve_plane(vals, hole)
        near_lo, near_hi = _range_near(vals, hole)
        if not ((fill >= near_lo).all() and (fill <= near_hi).all()):
            # Some fill leaves the range of the known pixels around the holes: clip it to
            # the plane's (which holds that range, so a fill within it is never clipped).
            fill = np.clip(fill, *_known_range(vals, hole))
        if image.dtype.kind in "iu":
            fill = np.rint(fill)
        target = oview[idx][..., None] if ch is None else oview[idx]
        sub = target[..., :nchan]
        sub[_nonzero(hole)] = fill.astype(image.dtype)  # solve_plane's order
    return out
