"""How wrong is a repair? An estimate of its RMSE without ground truth.

:func:`estimate_error` (``Inpainter.estimate_error``) hides known pixels near the holes in
the holes' own shapes, repairs them with the same inpainter and measures:

1. The mask's hole groups (:func:`rnon_engine.inference.routing.groups`) are sampled (at
   most ``max_groups`` per plane, uniformly).
2. Each sampled group is translated to the nearest of a few random offsets (up to twice
   its extent plus a gap) where its pixels are all known and at least :data:`GAP` px away
   from any hole or other probe. A group that fits nowhere is placed
   where it overlaps the holes least (if at most half of it), and only its known pixels
   are measured; a group too large for that (a hole over much of the image) is copied
   shrunk 2, 4 or 8 times.
3. The inpainter repairs holes ∪ probes; the error is measured on the probes' pixels
   against their true values, in the image's units (all channels but alpha), pooled
   over ``repeats`` independent placements: ``sqrt(sum of squared errors / count)``.

The placements depend only on the mask and ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from rnon_engine.errors import InputError
from rnon_engine.inference.layout import PlaneLayout
from rnon_engine.inference.routing import KINDS
from rnon_engine.inference.routing import groups as hole_groups

if TYPE_CHECKING:
    from rnon_engine.inference.inpainter import Inpainter

__all__ = ["GAP", "ErrorEstimate", "estimate_error", "estimate_error_detail", "probe_mask"]

#: Known pixels kept between a probe and any hole or other probe.
GAP = 4
_TRIES = 24


def probe_mask(hole: np.ndarray, rng: np.random.Generator, max_groups: int = 256) -> np.ndarray:
    """Copies of the holes of a 2-D mask, moved to nearby known places.

    Args:
        hole: ``H×W`` bool, True = hole.
        rng: Source of the sampling and the offsets.
        max_groups: At most this many groups get a copy (sampled uniformly).

    Returns:
        ``H×W`` uint8: 0 outside the probes (and on every hole pixel), else
        ``1 + KINDS.index(kind)`` of the group the probe copies.
    """
    import cv2
    from scipy import ndimage

    h, w = hole.shape
    labels, found = hole_groups(hole)
    probe = np.zeros((h, w), dtype=np.uint8)
    if not found:
        return probe
    order = rng.permutation(len(found))[:max_groups]
    chosen = sorted(found[i].label for i in order)
    code = {g.label: 1 + KINDS.index(g.kind) for g in found}
    boxes = ndimage.find_objects(labels)
    blocked = ndimage.binary_dilation(hole, np.ones((3, 3), bool), iterations=GAP)
    for lab in chosen:
        sl = boxes[lab - 1]
        shape = labels[sl] == lab
        centre = ((sl[0].start + sl[0].stop) / 2, (sl[1].start + sl[1].stop) / 2)
        # A copy of the group itself, else (large holes) of the group shrunk 2x, 4x, 8x.
        for scale in (1, 2, 4, 8):
            if scale > 1:
                size = (max(1, shape.shape[1] // scale), max(1, shape.shape[0] // scale))
                shape = cv2.resize(shape.astype(np.uint8), size, interpolation=cv2.INTER_AREA) > 0
            spot = _place(shape, centre, blocked, rng)
            if spot is not None:
                break
        if spot is None:
            continue
        ys, xs = np.nonzero(shape)
        bh, bw = shape.shape
        y0, x0 = spot
        py, px = ys + y0, xs + x0
        keep = ~hole[py, px] & (probe[py, px] == 0)
        probe[py[keep], px[keep]] = code[lab]
        # Later probes keep their distance from this one.
        y_lo, y_hi = max(0, y0 - GAP), min(h, y0 + bh + GAP)
        x_lo, x_hi = max(0, x0 - GAP), min(w, x0 + bw + GAP)
        local = np.zeros((y_hi - y_lo, x_hi - x_lo), bool)
        local[py - y_lo, px - x_lo] = True
        blocked[y_lo:y_hi, x_lo:x_hi] |= ndimage.binary_dilation(
            local, np.ones((3, 3), bool), iterations=GAP
        )
    return probe


@dataclass(frozen=True)
class ErrorEstimate:
    """An error estimate and its detail.

    Attributes:
        rmse: Expected RMSE of the repaired pixels, in the image's units.
        by_kind: The same per damage kind of the probed hole groups
            (:data:`rnon_engine.inference.routing.KINDS`).
        probed_pixels: Probe pixels measured per kind (all placements together).
    """

    rmse: float
    by_kind: dict[str, float] = field(default_factory=dict)
    probed_pixels: dict[str, int] = field(default_factory=dict)


def _place(
    shape: np.ndarray,
    centre: tuple[float, float],
    blocked: np.ndarray,
    rng: np.random.Generator,
) -> tuple[int, int] | None:
    """Top-left corner for ``shape`` where it overlaps ``blocked`` least (at most half).

    Offsets from ``centre`` are tried nearest first (up to twice the shape's extent plus a
    gap); the first free one wins. If none is free, as many uniform positions in the
    image are tried as well.
    """
    h, w = blocked.shape
    bh, bw = shape.shape
    if bh > h or bw > w:
        return None
    ys, xs = np.nonzero(shape)
    ext = max(bh, bw)
    radii = np.sort(rng.uniform(GAP + 1, 2 * ext + GAP + 8, _TRIES))
    angles = rng.uniform(0.0, 2.0 * np.pi, _TRIES)
    near = [
        (
            int(round(centre[0] - bh / 2 + r * np.sin(a))),
            int(round(centre[1] - bw / 2 + r * np.cos(a))),
        )
        for r, a in zip(radii, angles, strict=True)
    ]
    anywhere = zip(
        rng.integers(0, h - bh + 1, _TRIES), rng.integers(0, w - bw + 1, _TRIES), strict=True
    )
    best: tuple[int, int, int] | None = None
    for y0, x0 in [*near, *((int(y), int(x)) for y, x in anywhere)]:
        if not (0 <= y0 <= h - bh and 0 <= x0 <= w - bw):
            continue
        overlap = int(np.count_nonzero(blocked[ys + y0, xs + x0]))
        if best is None or overlap < best[0]:
            best = (overlap, y0, x0)
        if overlap == 0:
            break
    if best is None or best[0] * 2 > ys.size:
        return None
    return best[1], best[2]


def _plausible(image: np.ndarray, mask: np.ndarray, channel_axis: int | str | None) -> bool:
    """Whether the mask fits the image and leaves known pixels in every plane."""
    try:
        layout = PlaneLayout.of(image.shape, channel_axis)
    except InputError:
        return False
    if layout.mask_per_plane(mask.shape) is None:
        return False
    h, w = layout.spatial
    flat = (mask != 0).reshape(-1, h * w)
    return not flat.all(axis=1).any()


def estimate_error_detail(
    inpainter: Inpainter,
    image: np.ndarray,
    mask: np.ndarray,
    *,
    seed: int = 0,
    repeats: int = 2,
    max_groups: int = 256,
    channel_axis: int | str | None = "auto",
    **inpaint_kwargs: Any,
) -> ErrorEstimate:
    """Expected RMSE of ``inpainter``'s repair of ``image`` where ``mask`` is nonzero.

    Args:
        inpainter: The inpainter whose repair is estimated.
        image: As for :meth:`Inpainter.inpaint`.
        mask: As for :meth:`Inpainter.inpaint`; must hold at least one hole pixel.
        seed: Seed of the probes' placement: the same seed gives the same estimate.
        repeats: Independent placements pooled (each costs one repair).
        max_groups: Hole groups probed per plane, at most.
        channel_axis: As for :meth:`Inpainter.inpaint`.
        **inpaint_kwargs: Passed to ``inpaint`` (``stages``, ``progress``, ``cancel``).

    Returns:
        The root-mean-square error of the repaired pixels, in the image's own units
        (e.g. 0-255 for uint8), over all channels but an RGBA image's alpha, overall
        and per damage kind.

    Raises:
        InputError: The mask is empty, the image or mask is not acceptable (the same
            errors as ``inpaint``), or no copy of any hole fits in the known pixels.
    """
    image = np.asarray(image)
    mask = np.asarray(mask)
    if not isinstance(repeats, int) or repeats < 1:
        raise InputError(f"repeats must be an integer >= 1, got {repeats!r}")
    if not isinstance(max_groups, int) or max_groups < 1:
        raise InputError(f"max_groups must be an integer >= 1, got {max_groups!r}")
    if mask.ndim < 2:
        raise InputError(f"mask must have at least 2 dimensions (Y, X), got shape {mask.shape}")
    holes = mask != 0
    if not holes.any():
        raise InputError(
            "the mask is empty: there are no repaired pixels whose error could be estimated; "
            "mark the pixels to repair (nonzero) first"
        )
    if not _plausible(image, mask, channel_axis):
        # inpaint refuses it with its own message, before any work.
        inpainter.inpaint(image, mask, channel_axis=channel_axis, **inpaint_kwargs)
    rng = np.random.default_rng(seed)
    planes = list(np.ndindex(*holes.shape[:-2]))
    per_plane = max(16, max_groups // max(1, len(planes)))
    sse = np.zeros(len(KINDS) + 1)
    count = np.zeros(len(KINDS) + 1, dtype=np.int64)
    npix = np.zeros(len(KINDS) + 1, dtype=np.int64)
    for _ in range(repeats):
        probes = np.zeros(holes.shape, dtype=np.uint8)
        for idx in planes:
            if holes[idx].any():
                probes[idx] = probe_mask(holes[idx], rng, per_plane)
        if not probes.any():
            raise InputError(
                "no copy of any hole fits in the known pixels around the holes (the holes "
                "cover too much of the image): the error cannot be estimated"
            )
        out = inpainter.inpaint(
            image, holes | (probes > 0), channel_axis=channel_axis, **inpaint_kwargs
        )
        layout = PlaneLayout.of(image.shape, channel_axis)
        ch = layout.channel_axis
        truth, fill = layout.channels_last(image), layout.channels_last(out)
        if ch is not None and truth.shape[-1] == 4:
            truth, fill = truth[..., :3], fill[..., :3]
        spatial = truth.shape if ch is None else truth.shape[:-1]
        codes = np.broadcast_to(probes, spatial)
        where = codes > 0
        diff = fill[where].astype(np.float64) - truth[where].astype(np.float64)
        sq = (diff * diff).reshape(diff.shape[0], -1)
        kind = codes[where]
        sse += np.bincount(kind, weights=sq.sum(axis=1), minlength=len(KINDS) + 1)
        npix += np.bincount(kind, minlength=len(KINDS) + 1)
        count += np.bincount(kind, minlength=len(KINDS) + 1) * sq.shape[1]
    by_kind = {
        k: float(np.sqrt(sse[i + 1] / count[i + 1])) for i, k in enumerate(KINDS) if count[i + 1]
    }
    pixels = {k: int(npix[i + 1]) for i, k in enumerate(KINDS) if npix[i + 1]}
    return ErrorEstimate(float(np.sqrt(sse.sum() / count.sum())), by_kind, pixels)


def estimate_error(
    inpainter: Inpainter, image: np.ndarray, mask: np.ndarray, **kwargs: Any
) -> float:
    """:func:`estimate_error_detail`'s overall RMSE (the same arguments)."""
    return estimate_error_detail(inpainter, image, mask, **kwargs).rmse
