"""Bundled sample images with deterministic damage masks (nothing is downloaded).

- :func:`damaged_photo`: scikit-image's ``astronaut`` (512×512 RGB uint8, public domain,
  NASA) with scratches and dust spots.
- :func:`dead_pixel_stack`: a synthetic 16-bit fluorescence-like Z stack with the dead and
  hot pixels of a camera sensor (the same positions in every plane, so the mask is 2-D and
  broadcast over Z). Inpaint it with ``channel_axis=None``.
- :func:`fluorescence_planes`: independent synthetic 16-bit fluorescence-microscopy planes
  (nuclei, filaments, puncta, uneven background, shot noise), a test family unlike
  photographs for fine-tuning (``docs/finetune.md``).

Masks are nonzero where a pixel must be repaired, as everywhere in the user-facing API.
"""

from __future__ import annotations

import numpy as np

__all__ = ["damaged_photo", "dead_pixel_stack", "fluorescence_planes", "scratch_mask"]


def scratch_mask(
    shape: tuple[int, int], *, scratches: int = 6, spots: int = 25, seed: int = 0
) -> np.ndarray:
    """A deterministic mask of thin scratches (random lines) and dust (small disks).

    Args:
        shape: ``(H, W)``.
        scratches: Number of line scratches (1-3 px wide).
        spots: Number of dust spots (radius 2-7 px).
        seed: Random seed.

    Returns:
        ``H×W`` bool, True = damaged.
    """
    from scipy import ndimage
    from skimage.draw import disk, line

    rng = np.random.default_rng(seed)
    h, w = shape
    mask = np.zeros(shape, dtype=bool)
    for _ in range(scratches):
        r0, r1 = rng.integers(0, h, 2)
        c0, c1 = rng.integers(0, w, 2)
        thin = np.zeros(shape, dtype=bool)
        thin[line(int(r0), int(c0), int(r1), int(c1))] = True
        width = int(rng.integers(0, 2))
        mask |= ndimage.binary_dilation(thin, iterations=width) if width else thin
    for _ in range(spots):
        center = (int(rng.integers(0, h)), int(rng.integers(0, w)))
        mask[disk(center, float(rng.uniform(2, 7)), shape=shape)] = True
    return mask


def damaged_photo(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut photograph (512×512×3 uint8) and a scratch/dust mask (bool).

    The image is returned intact: the mask says which pixels a repair should replace.
    """
    from skimage import data

    image = data.astronaut()
    return image, scratch_mask(image.shape[:2], seed=seed)


def dead_pixel_stack(
    shape: tuple[int, int, int] = (4, 256, 256), seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic 16-bit microscopy stack with dead/hot sensor pixels, and their mask.

    The stack (``Z×Y×X`` uint16, 12-bit range) holds Gaussian "nuclei" and finer
    "vesicles" on a dark offset of 100 counts, with Poisson noise. About 0.2 % of the sensor
    pixels, plus one partly dead column, read 0 (dead) or 4095 (hot) in every plane.

    Returns:
        ``(stack, mask)`` with ``mask`` a ``Y×X`` bool array (True = defective pixel),
        valid for every plane.
    """
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    z, h, w = shape
    truth = np.zeros(shape, dtype=np.float64)
    for k in range(z):
        plane = np.zeros((h, w))
        ys, xs = rng.integers(0, h, 30), rng.integers(0, w, 30)
        plane[ys, xs] = rng.uniform(2e4, 6e4, 30)
        plane = ndimage.gaussian_filter(plane, 6 + k * 0.5)
        fine = np.zeros((h, w))
        ys, xs = rng.integers(0, h, 200), rng.integers(0, w, 200)
        fine[ys, xs] = rng.uniform(500, 2000, 200)
        truth[k] = 100 + plane + ndimage.gaussian_filter(fine, 1.5)
    stack = np.clip(rng.poisson(truth), 0, 4095).astype(np.uint16)
    mask = rng.random((h, w)) < 0.002
    col = int(rng.integers(w // 4, 3 * w // 4))
    mask[h // 3 : h // 3 + h // 4, col] = True
    hot = rng.random((h, w)) < 0.3
    stack[:, mask & hot] = 4095
    stack[:, mask & ~hot] = 0
    return stack, mask


def fluorescence_planes(
    n: int = 8, shape: tuple[int, int] = (256, 256), seed: int = 0
) -> np.ndarray:
    """Synthetic widefield fluorescence planes, ``n×H×W`` ``uint16`` in a 12-bit range.

    Each plane is drawn independently from ``(seed, plane index)``:

    - background: camera offset of 100 counts plus a smooth illumination gradient
      (60-200 counts);
    - 6-14 nuclei: rotated ellipses (semi-axes 8-22 px at 256²) with a blurred edge and
      chromatin texture (smoothed noise), 900-2600 counts;
    - 10-24 filaments: random smooth curves (cumulative random turning), 1-2 px wide,
      blurred, 300-1100 counts;
    - 40-120 puncta: Gaussian spots of sigma 1-2 px, 200-1500 counts;
    - Poisson (shot) noise on the total, clipped to 0..4095.

    Sizes scale with ``min(shape) / 256``. Deterministic for a given ``seed``.

    Args:
        n: Number of planes.
        shape: ``(H, W)`` of each plane.
        seed: Random seed; plane ``i`` depends only on ``(seed, i)``.

    Returns:
        ``uint16`` array ``(n, H, W)``.
    """
    from scipy import ndimage
    from skimage.draw import ellipse

    h, w = shape
    k = min(h, w) / 256.0
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    out = np.empty((n, h, w), dtype=np.uint16)
    for i in range(n):
        rng = np.random.default_rng([seed, i, 0x666C756F])
        ay, ax = rng.uniform(-1, 1, 2)
        bg = 100 + rng.uniform(60, 200) * (1 + 0.5 * (ay * yy + ax * xx))
        signal = np.zeros((h, w))
        for _ in range(int(rng.integers(6, 15))):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            ry, rx = rng.uniform(8, 22, 2) * k
            body = np.zeros((h, w))
            rr, cc = ellipse(cy, cx, ry, rx, shape=(h, w), rotation=rng.uniform(0, np.pi))
            body[rr, cc] = 1.0
            body = ndimage.gaussian_filter(body, 1.5 * k)
            texture = ndimage.gaussian_filter(rng.normal(size=(h, w)), 2.0 * k)
            texture = 1 + 0.35 * texture / (texture.std() + 1e-9)
            signal += rng.uniform(900, 2600) * body * np.clip(texture, 0.3, None)
        lines = np.zeros((h, w))
        for _ in range(int(rng.integers(10, 25))):
            steps = int(rng.integers(60, 200) * k) + 2
            angle = np.cumsum(rng.normal(0, 0.12, steps)) + rng.uniform(0, 2 * np.pi)
            y = rng.uniform(0, h) + np.cumsum(np.sin(angle))
            x = rng.uniform(0, w) + np.cumsum(np.cos(angle))
            keep = (y >= 0) & (y < h) & (x >= 0) & (x < w)
            width = int(rng.integers(1, 3))
            seg = np.zeros((h, w))
            seg[y[keep].astype(int), x[keep].astype(int)] = 1.0
            if width > 1:
                seg = ndimage.binary_dilation(seg > 0).astype(float)
            lines += rng.uniform(300, 1100) * seg
        signal += ndimage.gaussian_filter(lines, 0.8 * k)
        dots = np.zeros((h, w))
        m = int(rng.integers(40, 121))
        dots[rng.integers(0, h, m), rng.integers(0, w, m)] = rng.uniform(200, 1500, m) * 20
        signal += ndimage.gaussian_filter(dots, rng.uniform(1.0, 2.0) * k)
        out[i] = np.clip(rng.poisson(bg + signal), 0, 4095).astype(np.uint16)
    return out
