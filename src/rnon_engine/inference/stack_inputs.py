"""The stack network's inputs for one plane (torch-free; shared by inference and training).

:func:`stack_inputs` takes the neighbouring planes aligned to the damaged plane
(:func:`align_neighbours`, :func:`rnon_engine.inference.stack_align.align_plane`), maps
each to the plane's intensities (:func:`match_intensity`: gain and offset fitted on the
pixels both know, for drift, bleaching and flicker), drops those that still disagree with
the plane (:func:`drop_disagreeing`: another scene), averages the others with weights
``1 / |offset|`` into the base fill of the hole pixels an aligned neighbour knows, fills the
plane in 2-D with Telea, and stacks everything in the channel order of
:class:`rnon_engine.nn.networks.stack.StackRepairNet`. Training
(:mod:`rnon_engine.train.stacks`) calls the same function, so the network sees at run time
exactly what it was trained on. (The classical ``neighbours`` fill's harmonic seam
correction is not used here: with fitted gains it cost 0.4 dB on the benchmark stacks,
its border values being single noisy pixels.)

"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnon_engine.inference.classical import fill as classical_fill
from rnon_engine.inference.stack_align import align_plane, warp_plane
from rnon_engine.inference.stack_context import fill_plane

__all__ = [
    "StackInputs",
    "align_neighbours",
    "aligned_fill_plane",
    "drop_disagreeing",
    "match_intensity",
    "stack_inputs",
]

#: Plausible gain of a neighbour relative to the plane (drift, bleaching, flicker); a fit
#: outside this range (unrelated content) keeps gain 1 and matches the mean only.
GAIN_RANGE = (0.5, 2.0)


@dataclass
class StackInputs:
    """The network inputs of one plane and what the caller needs to use its output.

    Attributes:
        x: ``C×H×W`` float32 inputs (``C = 4*slots + 5``).
        base: ``H×W`` float32 base fill (the plane outside its holes).
        has: ``H×W`` bool: hole pixels that an aligned neighbour knows (the network's
            output is used there; the other hole pixels go to a 2-D method).
        kinds: The alignment chosen for each neighbour, by signed offset.
    """

    x: np.ndarray
    base: np.ndarray
    has: np.ndarray
    kinds: dict[int, str]


def align_neighbours(
    plane: np.ndarray,
    known: np.ndarray,
    neighbours: list[tuple[int, np.ndarray, np.ndarray]],
    guide: list[np.ndarray] | None = None,
) -> tuple[list[tuple[int, np.ndarray, np.ndarray]], dict[int, str]]:
    """Warp each neighbour (and its known pixels) into the damaged plane's frame.

    Args:
        plane: ``H×W`` float32 damaged plane (hole values ignored).
        known: ``H×W`` bool, its known pixels.
        neighbours: ``(signed offset, H×W values, H×W known)`` per neighbouring plane.
        guide: Optional ``H×W`` planes to estimate the warps on instead (the mean over
            channels of an RGB stack: ``plane`` is then the guide of the damaged plane and
            the neighbours' values are warped with the warps found on the guides).

    Returns:
        ``(aligned neighbours in the same form, {offset: alignment kind})``.
    """
    out, kinds = [], {}
    for i, (d, values, nknown) in enumerate(neighbours):
        ref_mov = values if guide is None else guide[i]
        al = align_plane(plane, known, ref_mov, nknown)
        warped, valid = warp_plane(values, nknown, al.matrix)
        out.append((d, warped, valid))
        kinds[d] = al.kind
    return out, kinds


def match_intensity(
    plane: np.ndarray,
    known: np.ndarray,
    aligned: list[tuple[int, np.ndarray, np.ndarray]],
) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Map each aligned neighbour's values to the plane's: ``g·v + o`` fitted on shared pixels.

    Least squares over the pixels both know (at least 16); a gain outside
    :data:`GAIN_RANGE` keeps gain 1 (the offset matches the means).

    Args:
        plane: ``H×W`` float32 plane (hole values ignored).
        known: ``H×W`` bool, its known pixels.
        aligned: ``(signed offset, H×W values, H×W valid)`` per aligned neighbour.

    Returns:
        The neighbours with matched values (0 where not valid).
    """
    out = []
    for d, v, m in aligned:
        both = known & m
        if both.sum() >= 16:
            x, y = v[both].astype(np.float64), plane[both].astype(np.float64)
            var = x.var()
            g = float(((x - x.mean()) * (y - y.mean())).mean() / var) if var > 1e-12 else 1.0
            if not GAIN_RANGE[0] <= g <= GAIN_RANGE[1]:
                g = 1.0
            o = float(y.mean() - g * x.mean())
            v = np.where(m, v * g + o, 0).astype(np.float32)
        out.append((d, v, m))
    return out


def drop_disagreeing(
    plane: np.ndarray,
    known: np.ndarray,
    aligned: list[tuple[int, np.ndarray, np.ndarray]],
) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Mark invalid the (intensity-matched) neighbours that disagree with the plane.

    A neighbour is dropped (its validity mask cleared) when, on the pixels both know, its
    RMSE to the plane exceeds ``2 × the best neighbour's RMSE + 0.01`` (another scene: a
    cut, a flash, a bad frame; a neighbour as noisy as the others is kept) or its
    correlation with the plane is below 0.1. Neighbours with fewer than 16 shared pixels
    are kept. If every neighbour disagrees, none is used (the 2-D method repairs the plane).

    Args:
        plane: ``H×W`` float32 plane (hole values ignored).
        known: ``H×W`` bool, its known pixels.
        aligned: ``(signed offset, H×W values, H×W valid)`` per neighbour.

    Returns:
        The neighbours, the dropped ones with an all-False mask.
    """
    stats = []
    for _, v, m in aligned:
        both = known & m
        if both.sum() < 16:
            stats.append(None)
            continue
        x, y = v[both].astype(np.float64), plane[both].astype(np.float64)
        rmse = float(np.sqrt(np.mean((x - y) ** 2)))
        sx, sy = x.std(), y.std()
        corr = float(((x - x.mean()) * (y - y.mean())).mean() / (sx * sy)) if sx * sy > 0 else 1.0
        stats.append((rmse, corr))
    rmses = [st[0] for st in stats if st is not None]
    if not rmses:
        return aligned
    limit = 2 * min(rmses) + 0.01
    out = []
    for (d, v, m), st in zip(aligned, stats, strict=True):
        if st is not None and (st[0] > limit or st[1] < 0.1):
            m = np.zeros_like(m)
        out.append((d, v, m))
    return out


def stack_inputs(
    plane: np.ndarray,
    hole: np.ndarray,
    aligned: list[tuple[int, np.ndarray, np.ndarray]],
    slots: int,
) -> StackInputs:
    """Build the network inputs of one single-channel plane.

    Args:
        plane: ``H×W`` float32 in [0, 1] (hole values ignored).
        hole: ``H×W`` bool, True = pixel to repair.
        aligned: ``(signed offset, H×W values, H×W valid)`` of the neighbours, already in
            the plane's frame (:func:`align_neighbours`), any number each side: all feed
            the ``neighbours`` fill, the ``slots`` nearest each side are network channels.
        slots: Neighbour channels on each side.

    Returns:
        A :class:`StackInputs`.
    """
    h, w = hole.shape
    known = ~hole
    plane = np.where(hole, np.float32(0), plane).astype(np.float32)
    tel = classical_fill("telea", plane[..., None], hole)[..., 0]
    aligned = drop_disagreeing(plane, known, match_intensity(plane, known, aligned))
    num = np.zeros((h, w), np.float64)
    den = np.zeros((h, w), np.float64)
    for d, v, m in aligned:
        num += np.where(m, v, 0.0) / abs(d)
        den += m / abs(d)
    has = (den > 0) & hole
    pred = np.clip(num / np.maximum(den, 1e-12), 0.0, 1.0).astype(np.float32)
    base = np.where(has, pred, np.where(hole, tel, plane)).astype(np.float32)
    by_offset = {d: (v, m) for d, v, m in aligned}
    order = [-d for d in range(slots, 0, -1)] + list(range(1, slots + 1))
    x = np.zeros((4 * slots + 5, h, w), np.float32)
    x[0] = plane
    x[2 * slots + 1] = known
    for j, d in enumerate(order):
        if d in by_offset:
            v, m = by_offset[d]
            x[1 + j] = np.where(m, v, 0)
            x[2 * slots + 2 + j] = m
    x[4 * slots + 2] = tel
    x[4 * slots + 3] = base
    x[4 * slots + 4] = has
    return StackInputs(x, base, has, {})


def aligned_fill_plane(
    plane: np.ndarray,
    hole: np.ndarray,
    neighbours: list[tuple[int, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """The classical ``neighbours`` fill after aligning the neighbours (a ``prefill`` filler).

    Same contract as :func:`rnon_engine.inference.stack_context.fill_plane`; the warps are
    estimated on the mean over channels (values as given, any range).
    """
    known = ~hole
    p = plane.astype(np.float32)
    guides = [v.astype(np.float32).mean(axis=-1) for _, v, _ in neighbours]
    aligned, _ = align_neighbours(
        p.mean(axis=-1), known, [(d, v.astype(np.float32), m) for d, v, m in neighbours],
        guide=guides,
    )
    return fill_plane(plane, hole, [(d, v, m) for d, v, m in aligned if m.any()])
