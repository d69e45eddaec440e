"""Align a neighbouring plane of a stack to a damaged plane, on known pixels only (torch-free).

Used by the learned stack model (:mod:`rnon_engine.inference.stack_model`, and by its
training data, :mod:`rnon_engine.train.stacks`) before the planes are compared: motion
between planes (drift of the stage, a moving sample, a small warp) would otherwise put the
wrong structure into a hole.

How one neighbour is aligned (:func:`align_plane`):

1. **Translation**: :func:`skimage.registration.phase_cross_correlation` with the two
   planes' masks of known pixels (masked normalised cross-correlation, whole pixels).
2. **Refinement**: :func:`cv2.findTransformECC` (an affine warp, sub-pixel), started from
   that translation, with the damaged plane's known pixels as its mask (the neighbour is
   the template: OpenCV's ECC masks the warped image only). Fails or diverges → skipped.
3. **Choice**: of the identity, the translation and the affine warp, the one whose warped
   neighbour has the highest correlation with the damaged plane on the pixels both know
   (so alignment never makes a pair worse than not aligning). Large warps (a scale off
   by more than 10 %, a shear) are not candidates.

The neighbour and its mask of known pixels are then warped (bilinear values; a pixel is
valid where the warped neighbour lies inside its frame and all its source pixels are known,
and its 3×3 neighbourhood too, unless no warp is applied).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Alignment", "align_plane", "warp_plane"]

#: Most plausible warp: linear part within this of the identity (scale ±10 %, ~6° shear).
_MAX_LINEAR = 0.1
#: Least known pixels in common (fraction of the plane) for a warp to be estimated.
_MIN_OVERLAP = 0.05


@dataclass(frozen=True)
class Alignment:
    """How a neighbour plane maps onto the damaged plane.

    Attributes:
        matrix: ``2×3`` affine matrix mapping damaged-plane coordinates ``(x, y)`` to
            neighbour coordinates (``cv2.warpAffine`` with ``WARP_INVERSE_MAP``).
        kind: ``"identity"``, ``"translation"`` or ``"affine"``.
        score: Correlation of the aligned neighbour with the damaged plane on their common
            known pixels (NaN when too few).
    """

    matrix: np.ndarray
    kind: str
    score: float


def _correlation(a: np.ndarray, b: np.ndarray, both: np.ndarray) -> float:
    if both.sum() < 16:
        return float("nan")
    x = a[both].astype(np.float64)
    y = b[both].astype(np.float64)
    x -= x.mean()
    y -= y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 0 else float("nan")


def warp_plane(
    values: np.ndarray, known: np.ndarray, matrix: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Warp a neighbour plane and its known pixels into the damaged plane's frame.

    Args:
        values: ``h×w`` or ``h×w×C`` float32 neighbour values.
        known: ``h×w`` bool, the neighbour's known pixels.
        matrix: ``2×3`` map from damaged-plane to neighbour coordinates.

    Returns:
        ``(warped values float32, valid h×w bool)``; invalid pixels hold 0.
    """
    import cv2

    h, w = known.shape
    if np.allclose(matrix, [[1, 0, 0], [0, 1, 0]]):
        out = np.where(known[..., None] if values.ndim == 3 else known, values, 0)
        return out.astype(np.float32), known.copy()
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    if values.ndim == 3:  # channel by channel (OpenCV takes at most 4)
        warped = np.stack(
            [warp_plane(values[..., c], known, matrix)[0] for c in range(values.shape[-1])], -1
        )
    else:
        warped = cv2.warpAffine(
            np.ascontiguousarray(np.where(known, values, 0), dtype=np.float32), matrix, (w, h),
            flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
        )
    cover = cv2.warpAffine(
        known.astype(np.float32), matrix, (w, h), flags=flags,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )
    # valid: inside the frame, every source pixel known, and one pixel away from the
    # neighbour's unknown pixels (a warp estimated to a pixel may be off by one: its rim
    # is left to the plane's own 2-D fill, so holes shared by every plane get that fill)
    valid = cv2.erode((cover > 1 - 1e-4).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    if values.ndim == 3:
        warped = np.where(valid[..., None], warped, 0)
    else:
        warped = np.where(valid, warped, 0)
    return warped.astype(np.float32), valid


def align_plane(
    ref: np.ndarray, ref_known: np.ndarray, mov: np.ndarray, mov_known: np.ndarray
) -> Alignment:
    """Estimate the warp of ``mov`` (a neighbour) onto ``ref`` (the damaged plane).

    Args:
        ref: ``h×w`` float plane with holes (hole values ignored).
        ref_known: ``h×w`` bool, known pixels of ``ref``.
        mov: ``h×w`` float neighbour plane.
        mov_known: ``h×w`` bool, known pixels of ``mov``.

    Returns:
        The chosen :class:`Alignment` (see the module docstring).
    """
    import cv2
    from skimage.registration import phase_cross_correlation

    ident = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    ref = ref.astype(np.float32)
    mov = mov.astype(np.float32)
    both = ref_known & mov_known
    base = _correlation(ref, mov, both)
    best = Alignment(ident, "identity", base)
    h, w = ref.shape
    if both.sum() < _MIN_OVERLAP * h * w or min(h, w) < 16:
        return best
    candidates = []
    try:
        res = phase_cross_correlation(
            ref, mov, reference_mask=ref_known, moving_mask=mov_known, overlap_ratio=0.5
        )
        shift = res[0] if isinstance(res, tuple) else res  # older versions: shifts only
        dy, dx = (float(s) for s in shift)
    except (ValueError, FloatingPointError):
        dy = dx = 0.0
    if np.isfinite(dy) and np.isfinite(dx) and (dy or dx):
        trans = np.array([[1, 0, -dx], [0, 1, -dy]], np.float32)
        candidates.append((trans, "translation"))
    else:
        trans = ident
    # ECC: template = the neighbour (holes filled by its mean), input = the damaged plane
    # with its known pixels as mask; the result maps neighbour -> damaged coordinates.
    tmpl = np.where(mov_known, mov, mov[mov_known].mean() if mov_known.any() else 0)
    inp = np.where(ref_known, ref, ref[ref_known].mean())
    init = cv2.invertAffineTransform(trans).astype(np.float32)
    try:
        _, fwd = cv2.findTransformECC(
            tmpl.astype(np.float32), inp.astype(np.float32), init, cv2.MOTION_AFFINE,
            (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 1e-4),
            ref_known.astype(np.uint8), 3,
        )
        lin = fwd[:, :2] - np.eye(2)
        if np.all(np.isfinite(fwd)) and np.abs(lin).max() < _MAX_LINEAR:
            candidates.append((cv2.invertAffineTransform(fwd).astype(np.float32), "affine"))
    except cv2.error:
        pass
    for mat, kind in candidates:
        warped, valid = warp_plane(mov, mov_known, mat)
        both_w = ref_known & valid
        if both_w.sum() < _MIN_OVERLAP * h * w:
            continue
        score = _correlation(ref, warped, both_w)
        if np.isfinite(score) and (not np.isfinite(best.score) or score > best.score):
            best = Alignment(mat, kind, score)
    return best
