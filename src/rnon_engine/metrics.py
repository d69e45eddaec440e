"""Image-quality metrics for inpainting, on float images in [0, 1].

PSNR and SSIM are scikit-image's (``data_range=1``); :func:`hole_l1` is the mean absolute
error over the repaired pixels only. Images are ``H×W`` or ``H×W×C`` (``channel_axis=-1``
for SSIM when there is a channel axis).
"""

from __future__ import annotations

import numpy as np

from rnon_engine.errors import InputError

__all__ = ["psnr", "ssim", "hole_l1", "score_repair"]


def _check(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise InputError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3):
        raise InputError(f"images must be H×W or H×W×C, got shape {a.shape}")
    return a, b


def psnr(truth: np.ndarray, result: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(1 / MSE)`` (inf when identical)."""
    from skimage.metrics import peak_signal_noise_ratio

    a, b = _check(truth, result)
    if np.array_equal(a, b):
        return float("inf")
    return float(peak_signal_noise_ratio(a, b, data_range=1.0))


def ssim(truth: np.ndarray, result: np.ndarray) -> float:
    """Structural similarity (scikit-image defaults: 7×7 window), channels averaged."""
    from skimage.metrics import structural_similarity

    a, b = _check(truth, result)
    return float(
        structural_similarity(a, b, data_range=1.0, channel_axis=-1 if a.ndim == 3 else None)
    )


def hole_l1(truth: np.ndarray, result: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute error over the pixels where ``mask`` is nonzero (all channels).

    Raises:
        InputError: Shapes disagree or the mask is empty.
    """
    a, b = _check(truth, result)
    m = np.asarray(mask) != 0
    if m.shape != a.shape[:2]:
        raise InputError(f"mask shape {m.shape} does not match image shape {a.shape[:2]}")
    if not m.any():
        raise InputError("the mask is empty: no hole pixels to measure")
    return float(np.abs(a[m] - b[m]).mean())


def score_repair(
    truth: np.ndarray, result: np.ndarray, hole: np.ndarray, *, max_psnr: float = 100.0
) -> dict[str, float]:
    """PSNR (whole image, capped at ``max_psnr``), SSIM (whole image), L1 in the hole.

    Args:
        truth: Ground truth, uint8 (divided by 255) or float in [0, 1].
        result: The method's output, same shape and kind.
        hole: ``(H, W)`` bool, True = hole.
        max_psnr: Cap of the PSNR (identical images have an infinite PSNR).

    Returns:
        ``{"psnr", "ssim", "l1", "changed_outside"}``; the last is the fraction of known
        pixels (any channel) that differ from the truth.
    """
    def unit(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a)
        return a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)

    t, r = unit(truth), unit(result)
    known = ~np.asarray(hole, bool)
    changed = np.any(t != r, axis=-1) if t.ndim == 3 else t != r
    return {
        "psnr": min(psnr(t, r), max_psnr),
        "ssim": ssim(t, r),
        "l1": hole_l1(t, r, hole),
        "changed_outside": float(changed[known].mean()) if known.any() else 0.0,
    }
