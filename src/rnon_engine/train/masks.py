"""Hole masks: irregular free-form generators, a fixed evaluation set, mask files.

(Over 600 lines on purpose: the generators, the file format and the evaluation set share
the drawing primitives, the shape/ratio checks and the manifest rules; split, each part
would have to expose those private helpers to the others.)

Conventions:
    Every function in this module that returns a mask returns a **hole mask**: a boolean
    ``numpy`` array of shape ``(H, W)`` where ``True`` marks a pixel to repair. This is the
    user-facing convention (napari Labels, mask files, the command line: nonzero = hole).

    The networks use the paper's convention instead, ``M = 1`` for a valid (known) pixel and
    ``M = 0`` for a hole. Convert at the boundary with :func:`to_valid`, which returns
    ``float32`` ``1 - hole``.

Generators:
    :func:`free_form_mask` draws random strokes (polylines of varied width with round joints)
    and blobs (ellipses and irregular polygons) with OpenCV, like the irregular masks of
    Liu et al. (2018) that the RNON paper evaluates on, adding shapes until the hole ratio
    reaches a target inside a requested interval ``(low, high]``. A shape that would push
    the ratio above ``high`` is rejected, and after repeated rejections the shapes shrink,
    down to single pixels, so the loop always ends; an interval that no pixel count can hit
    is refused up front with :class:`~rnon_engine.errors.InputError`.

    :data:`BUCKETS` names the paper's four hole-ratio buckets; :func:`bucket_mask` draws a
    mask inside one of them and :func:`random_mask` draws training masks whose ratio is
    (close to) uniform in a range. All generators take a :class:`numpy.random.Generator`
    and are reproducible from its seed.

Evaluation set:
    :func:`make_eval_masks` builds ``per_bucket`` masks per bucket; mask ``i`` of bucket
    ``b`` depends only on ``(seed, b, i)``, so enlarging the set keeps the first masks.
    :func:`save_eval_masks` writes them as PNGs plus ``manifest.json`` (seed, size, ratios
    and a SHA-256 of each mask's content); :func:`load_eval_masks` reads them back and
    checks shapes, ratios and hashes; :func:`get_eval_masks` loads a matching set or builds
    and saves a new one.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rnon_engine.errors import InputError

__all__ = [
    "BUCKETS",
    "GENERATOR_VERSION",
    "MASK_EXTENSIONS",
    "bucket_mask",
    "fine_damage_mask",
    "free_form_mask",
    "get_eval_masks",
    "hole_ratio",
    "load_eval_masks",
    "load_mask",
    "make_eval_masks",
    "mask_sha256",
    "random_mask",
    "read_eval_manifest",
    "save_eval_masks",
    "save_mask",
    "to_valid",
]

#: The paper's hole-ratio buckets, each the half-open interval ``(low, high]``.
BUCKETS: dict[str, tuple[float, float]] = {
    "0.01-0.25": (0.01, 0.25),
    "0.25-0.40": (0.25, 0.40),
    "0.40-0.50": (0.40, 0.50),
    "0.50-0.60": (0.50, 0.60),
}

#: Bumped whenever the generator's output for a given seed changes; stored in manifests.
GENERATOR_VERSION = 1

#: File name endings accepted by :func:`load_mask`.
MASK_EXTENSIONS = (".png", ".tif", ".tiff", ".npy")

_MANIFEST = "manifest.json"
_MANIFEST_FORMAT = 1
# Consecutive rejected shapes before the shapes get smaller.
_REJECTS_BEFORE_SHRINK = 4
# Shape scale below which the generator adds single pixels.
_MIN_SCALE = 1.0 / 64.0


def to_valid(hole: np.ndarray) -> np.ndarray:
    """Convert a hole mask (True/nonzero = hole) to the network's validity mask.

    Args:
        hole: Hole mask of any shape; nonzero or True marks a hole.

    Returns:
        ``float32`` array of the same shape: 1.0 for a valid (known) pixel, 0.0 for a hole.
    """
    return (np.asarray(hole) == 0).astype(np.float32)


def hole_ratio(hole: np.ndarray) -> float:
    """Fraction of pixels that are holes (nonzero)."""
    hole = np.asarray(hole)
    if hole.size == 0:
        raise InputError("hole_ratio: the mask is empty (size 0).")
    return float(np.count_nonzero(hole)) / float(hole.size)


def mask_sha256(hole: np.ndarray) -> str:
    """SHA-256 of a hole mask's content (its shape and packed bits), independent of file format."""
    hole = np.asarray(hole) != 0
    digest = hashlib.sha256()
    digest.update(np.asarray(hole.shape, dtype=np.int64).tobytes())
    digest.update(np.packbits(hole, axis=None).tobytes())
    return digest.hexdigest()


def _check_shape(shape: Sequence[int] | int) -> tuple[int, int]:
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape), int(shape))
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or min(shape) < 1:
        raise InputError(f"Mask shape must be (height, width) with positive sides, got {shape}.")
    return shape  # type: ignore[return-value]


def _check_range(ratio_range: Sequence[float], npix: int) -> tuple[float, float]:
    try:
        low, high = (float(r) for r in ratio_range)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"A hole-ratio range must be two numbers (low, high), got {ratio_range!r}."
        ) from exc
    if not (0.0 <= low < high <= 1.0):
        raise InputError(
            f"A hole-ratio range (low, high] needs 0 <= low < high <= 1, got ({low}, {high}]."
        )
    k_min = math.floor(low * npix) + 1
    while k_min / npix <= low:  # guard against rounding in low * npix
        k_min += 1
    k_max = math.floor(high * npix)
    while k_max / npix > high:
        k_max -= 1
    if k_min > k_max:
        raise InputError(
            f"No mask of {npix} pixels has a hole ratio in ({low}, {high}]: the interval "
            "is narrower than one pixel. Use a larger mask or a wider range."
        )
    return low, high


def _draw_stroke(canvas: np.ndarray, rng: np.random.Generator, scale: float) -> None:
    """Draw one random polyline of varied width with round joints (in place)."""
    h, w = canvas.shape
    side = min(h, w)
    n_vertices = int(rng.integers(3, 10))
    width = max(1, int(round(side * scale * rng.uniform(0.02, 0.09))))
    max_step = max(2.0, side * scale * 0.3)
    x, y = rng.uniform(0, w), rng.uniform(0, h)
    angle = rng.uniform(0, 2 * np.pi)
    points = [(x, y)]
    for _ in range(n_vertices):
        angle += rng.uniform(-np.pi / 2, np.pi / 2)
        step = rng.uniform(0.25, 1.0) * max_step
        # Points may leave the canvas: OpenCV clips the drawing, and strokes do not
        # pile up along the borders.
        x += step * np.cos(angle)
        y += step * np.sin(angle)
        points.append((x, y))
    pts = np.round(np.asarray(points)).astype(np.int32)
    cv2.polylines(canvas, [pts.reshape(-1, 1, 2)], False, 1, thickness=width)
    radius = max(0, width // 2)
    for px, py in pts:
        cv2.circle(canvas, (int(px), int(py)), radius, 1, thickness=-1)


def _draw_blob(canvas: np.ndarray, rng: np.random.Generator, scale: float) -> None:
    """Draw one filled ellipse or irregular star-shaped polygon (in place)."""
    h, w = canvas.shape
    side = min(h, w)
    cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
    size = side * scale * rng.uniform(0.03, 0.14)
    if rng.random() < 0.5:
        axes = (max(1, int(round(size))), max(1, int(round(size * rng.uniform(0.3, 1.0)))))
        angle = float(rng.uniform(0, 180))
        cv2.ellipse(canvas, (cx, cy), axes, angle, 0, 360, 1, thickness=-1)
    else:
        n = int(rng.integers(5, 12))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = size * rng.uniform(0.4, 1.3, n)
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
        cv2.fillPoly(canvas, [np.round(pts).astype(np.int32).reshape(-1, 1, 2)], 1)


def free_form_mask(
    shape: Sequence[int] | int,
    rng: np.random.Generator,
    ratio_range: Sequence[float],
    *,
    target: float | None = None,
    overshoot: float = 0.02,
    blob_probability: float = 0.25,
) -> np.ndarray:
    """Draw an irregular stroke-and-blob hole mask whose hole ratio lies in ``(low, high]``.

    Shapes (strokes with probability ``1 - blob_probability``, otherwise blobs) are added
    one at a time until the hole ratio reaches ``target``; a shape that would push it above
    ``min(high, target + overshoot)`` is rejected, and after a few rejections in a row the
    shapes shrink (down to single pixels), so the loop always ends.

    Args:
        shape: ``(height, width)`` or a single side for a square mask.
        rng: Source of randomness; the same generator state gives the same mask.
        ratio_range: ``(low, high)``; the result's hole ratio ``r`` satisfies
            ``low < r <= high``.
        target: Ratio to stop at, inside the range; drawn uniformly from it when None.
        overshoot: How far above ``target`` the ratio may end (absolute ratio), so that
            the ratios reached follow the targets' distribution.
        blob_probability: Probability that a shape is a blob rather than a stroke.

    Returns:
        Boolean ``(H, W)`` hole mask (True = hole).

    Raises:
        InputError: Bad shape or range, or a range no pixel count of this shape can hit.
    """
    h, w = _check_shape(shape)
    npix = h * w
    low, high = _check_range(ratio_range, npix)
    if target is None:
        target = float(rng.uniform(low, high))
    if not (low <= target <= high):
        raise InputError(f"target {target} lies outside the hole-ratio range ({low}, {high}].")
    # Pixel count to reach: the smallest count whose ratio exceeds low and reaches target.
    need = max(math.ceil(target * npix - 1e-9), math.floor(low * npix) + 1)
    while need / npix <= low:
        need += 1
    limit = math.floor(high * npix)
    while limit / npix > high:
        limit -= 1
    need = min(need, limit)
    limit = max(need, min(limit, math.floor((target + max(overshoot, 0.0)) * npix)))

    canvas = np.zeros((h, w), dtype=np.uint8)
    count = 0
    scale = 1.0
    rejects = 0
    while count < need:
        if scale < _MIN_SCALE:
            # Finest step: one pixel next to the holes (or anywhere at first); always fits.
            free = np.flatnonzero(canvas.ravel() == 0)
            if count:
                grown = cv2.dilate(canvas, np.ones((3, 3), np.uint8))
                border = np.flatnonzero((grown.ravel() == 1) & (canvas.ravel() == 0))
                if border.size:
                    free = border
            canvas.ravel()[free[int(rng.integers(free.size))]] = 1
            count += 1
            continue
        candidate = canvas.copy()
        if rng.random() < blob_probability:
            _draw_blob(candidate, rng, scale)
        else:
            _draw_stroke(candidate, rng, scale)
        new_count = int(np.count_nonzero(candidate))
        if new_count <= limit:
            canvas, count = candidate, new_count
            rejects = 0
        else:
            rejects += 1
            if rejects >= _REJECTS_BEFORE_SHRINK:
                scale *= 0.5
                rejects = 0
    return canvas.astype(bool)


def fine_damage_mask(
    shape: Sequence[int] | int,
    rng: np.random.Generator,
    ratio_range: Sequence[float] = (0.002, 0.03),
) -> np.ndarray:
    """Draw fine damage: dust (disks of radius 0-4 px), dead pixels and thin scratches.

    This is the damage napari users paint most often and that free-form stroke masks
    rarely contain (their strokes are 2-17 px wide on a 192-px crop). Shapes are added
    until the hole ratio reaches a target drawn uniformly in ``(low, high]``; a shape
    that would exceed ``high`` is dropped (single pixels finish the job).

    Args:
        shape: ``(height, width)`` or a single side.
        rng: Source of randomness; the same generator state gives the same mask.
        ratio_range: ``(low, high)`` hole ratio.

    Returns:
        Boolean ``(H, W)`` hole mask (True = hole) with ``low < ratio <= high``.

    Raises:
        InputError: Bad shape or range, or a range no pixel count of this shape can hit.
    """
    h, w = _check_shape(shape)
    npix = h * w
    low, high = _check_range(ratio_range, npix)
    need = max(math.ceil(float(rng.uniform(low, high)) * npix - 1e-9), math.floor(low * npix) + 1)
    limit = math.floor(high * npix)
    need = min(need, limit)
    canvas = np.zeros((h, w), dtype=np.uint8)
    count, rejects = 0, 0
    side = min(h, w)
    while count < need:
        candidate = canvas.copy()
        if rejects >= _REJECTS_BEFORE_SHRINK:
            candidate[int(rng.integers(h)), int(rng.integers(w))] = 1
        else:
            kind = rng.random()
            if kind < 0.45:  # dust
                centre = (int(rng.integers(w)), int(rng.integers(h)))
                cv2.circle(candidate, centre, int(rng.integers(0, 5)), 1, thickness=-1)
            elif kind < 0.6:  # a cluster of dead pixels
                y, x = int(rng.integers(h)), int(rng.integers(w))
                for _ in range(int(rng.integers(1, 6))):
                    yy = min(h - 1, max(0, y + int(rng.integers(-3, 4))))
                    xx = min(w - 1, max(0, x + int(rng.integers(-3, 4))))
                    candidate[yy, xx] = 1
            else:  # a thin scratch: a gently bending polyline 1-3 px wide
                n = int(rng.integers(2, 5))
                x, y = rng.uniform(0, w), rng.uniform(0, h)
                angle = rng.uniform(0, 2 * np.pi)
                pts = [(x, y)]
                for _ in range(n):
                    angle += rng.uniform(-0.4, 0.4)
                    step = rng.uniform(0.05, 0.25) * side
                    x, y = x + step * np.cos(angle), y + step * np.sin(angle)
                    pts.append((x, y))
                arr = np.round(np.asarray(pts)).astype(np.int32).reshape(-1, 1, 2)
                cv2.polylines(candidate, [arr], False, 1, thickness=int(rng.integers(1, 4)))
        new_count = int(np.count_nonzero(candidate))
        if new_count <= limit:
            canvas, count, rejects = candidate, new_count, 0
        else:
            rejects += 1
    return canvas.astype(bool)


def _resolve_bucket(bucket: str | Sequence[float]) -> tuple[float, float]:
    if isinstance(bucket, str):
        if bucket not in BUCKETS:
            raise InputError(
                f"Unknown mask bucket {bucket!r}; known buckets: {', '.join(BUCKETS)}."
            )
        return BUCKETS[bucket]
    return tuple(bucket)  # type: ignore[return-value]


def bucket_mask(
    shape: Sequence[int] | int, rng: np.random.Generator, bucket: str | Sequence[float]
) -> np.ndarray:
    """Draw a hole mask whose ratio lies in a bucket.

    Args:
        shape: ``(height, width)`` or a single side.
        rng: Source of randomness.
        bucket: A name from :data:`BUCKETS` (e.g. ``"0.25-0.40"``) or a ``(low, high)`` pair;
            the ratio lands in ``(low, high]``.

    Returns:
        Boolean ``(H, W)`` hole mask.
    """
    return free_form_mask(shape, rng, _resolve_bucket(bucket))


def random_mask(
    shape: Sequence[int] | int,
    rng: np.random.Generator,
    ratio_range: Sequence[float] = (0.01, 0.60),
) -> np.ndarray:
    """Draw a training hole mask with a target ratio uniform in ``ratio_range``.

    The ratio reached lies in ``(low, high]`` and overshoots the uniform target by at most
    one shape, so its distribution is close to uniform over the range.

    Args:
        shape: ``(height, width)`` or a single side.
        rng: Source of randomness.
        ratio_range: ``(low, high)``, default the span of the paper's buckets.

    Returns:
        Boolean ``(H, W)`` hole mask.
    """
    return free_form_mask(shape, rng, ratio_range)


# --------------------------------------------------------------------------- mask files


def load_mask(path: str | Path, expected_shape: Sequence[int] | None = None) -> np.ndarray:
    """Read a hole mask from PNG, TIFF or NumPy ``.npy`` (nonzero = hole).

    Colour images count a pixel as a hole when any of its colour channels (R, G, B) is
    nonzero; an alpha channel is ignored. Leading singleton axes are dropped.

    Args:
        path: A ``.png``, ``.tif``/``.tiff`` or ``.npy`` file.
        expected_shape: ``(H, W)`` the mask must have (e.g. the image's), or None.

    Returns:
        Boolean ``(H, W)`` hole mask.

    Raises:
        InputError: Missing or unreadable file, unsupported format, not a 2-D mask, or a
            shape other than ``expected_shape``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MASK_EXTENSIONS:
        raise InputError(
            f"Mask file {path} has an unsupported type; use one of {', '.join(MASK_EXTENSIONS)}."
        )
    if not path.is_file():
        raise InputError(f"Mask file {path} does not exist.")
    try:
        if suffix == ".npy":
            data = np.load(path, allow_pickle=False)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            data = tifffile.imread(path)
        else:
            data = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
            if data is None:
                raise ValueError("not a readable PNG")
    except Exception as exc:  # noqa: BLE001 - any reader failure is the file's fault
        raise InputError(f"Could not read mask file {path}: {exc}") from exc
    data = np.asarray(data)
    if data.dtype.kind not in "biuf":
        raise InputError(f"Mask file {path} holds {data.dtype} data, not numbers.")
    while data.ndim > 2 and data.shape[0] == 1:
        data = data[0]
    if data.ndim == 3 and data.shape[-1] in (1, 2, 3, 4):
        colour = data[..., :1] if data.shape[-1] <= 2 else data[..., :3]
        data = np.any(colour != 0, axis=-1)
    if data.ndim != 2:
        raise InputError(
            f"Mask file {path} has shape {data.shape}; a mask must be 2-D (height, width)."
        )
    if expected_shape is not None:
        expected = tuple(int(s) for s in expected_shape)[:2]
        if data.shape != expected:
            raise InputError(
                f"Mask file {path} has shape {data.shape} but the image is {expected} "
                "(height, width); they must match."
            )
    return data != 0


def save_mask(path: str | Path, hole: np.ndarray) -> Path:
    """Write a hole mask as PNG/TIFF (0 and 255, ``uint8``) or ``.npy`` (bool).

    Args:
        path: Destination; its ending picks the format (see :data:`MASK_EXTENSIONS`).
        hole: 2-D hole mask (nonzero = hole).

    Returns:
        The path written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    hole = np.asarray(hole)
    if hole.ndim != 2:
        raise InputError(f"A mask to save must be 2-D, got shape {hole.shape}.")
    if suffix not in MASK_EXTENSIONS:
        raise InputError(f"Cannot save a mask as {path}; use {', '.join(MASK_EXTENSIONS)}.")
    if suffix == ".npy":
        np.save(path, hole != 0)
    elif suffix in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(path, (hole != 0).astype(np.uint8) * 255)
    else:
        _write_png(path, hole)
    return path


def _write_png(path: Path, hole: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", (np.asarray(hole) != 0).astype(np.uint8) * 255)
    if not ok:
        raise InputError(f"Could not encode a mask of shape {np.shape(hole)} as PNG.")
    Path(path).write_bytes(buf.tobytes())


# ------------------------------------------------------------------- evaluation mask set


def make_eval_masks(
    size: Sequence[int] | int,
    per_bucket: int,
    seed: int = 0,
    buckets: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, list[np.ndarray]]:
    """Build the fixed evaluation masks: ``per_bucket`` masks per hole-ratio bucket.

    Mask ``i`` of the ``b``-th bucket is drawn from ``numpy.random.default_rng([seed, b, i])``,
    so it does not depend on ``per_bucket``.

    Args:
        size: ``(height, width)`` or a single side.
        per_bucket: Masks per bucket (>= 1).
        seed: Seed of the set.
        buckets: Name -> ``(low, high)``; default :data:`BUCKETS`.

    Returns:
        Bucket name -> list of boolean hole masks.
    """
    shape = _check_shape(size)
    if int(per_bucket) < 1:
        raise InputError(f"per_bucket must be at least 1, got {per_bucket}.")
    buckets = BUCKETS if buckets is None else buckets
    result: dict[str, list[np.ndarray]] = {}
    for b, (name, rng_range) in enumerate(buckets.items()):
        result[name] = [
            free_form_mask(shape, np.random.default_rng([int(seed), b, i]), rng_range)
            for i in range(int(per_bucket))
        ]
    return result


def save_eval_masks(
    folder: str | Path,
    masks: Mapping[str, Sequence[np.ndarray]],
    *,
    seed: int,
    buckets: Mapping[str, Sequence[float]] | None = None,
) -> Path:
    """Write an evaluation mask set: ``folder/<bucket>/<i>.png`` plus ``manifest.json``.

    Args:
        folder: Destination folder (created).
        masks: Bucket name -> masks, as from :func:`make_eval_masks`.
        seed: The seed the set was made with (recorded).
        buckets: Name -> ``(low, high)`` used; default :data:`BUCKETS`.

    Returns:
        Path of the manifest.
    """
    folder = Path(folder)
    buckets = BUCKETS if buckets is None else buckets
    shapes = {m.shape for ms in masks.values() for m in ms}
    if len(shapes) != 1:
        raise InputError(f"All evaluation masks must share one shape, got {sorted(shapes)}.")
    (shape,) = shapes
    entries: dict[str, Any] = {}
    for name, ms in masks.items():
        sub = folder / name
        sub.mkdir(parents=True, exist_ok=True)
        files = []
        for i, m in enumerate(ms):
            rel = f"{name}/{i:04d}.png"
            _write_png(folder / rel, m)
            files.append({"file": rel, "ratio": hole_ratio(m), "sha256": mask_sha256(m)})
        if name not in buckets:
            raise InputError(f"Bucket {name!r} has no ratio range; known: {', '.join(buckets)}.")
        low, high = (float(v) for v in buckets[name])
        entries[name] = {"range": [low, high], "masks": files}
    manifest = {
        "format": _MANIFEST_FORMAT,
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "size": list(shape),
        "per_bucket": min(len(ms) for ms in masks.values()),
        "hole": "nonzero pixel = hole",
        "buckets": entries,
    }
    path = folder / _MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(path)
    return path


def read_eval_manifest(folder: str | Path) -> dict[str, Any]:
    """Read ``manifest.json`` of an evaluation mask folder."""
    path = Path(folder) / _MANIFEST
    if not path.is_file():
        raise InputError(f"{folder} holds no evaluation masks ({_MANIFEST} is missing).")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"Could not read {path}: {exc}") from exc


def load_eval_masks(
    folder: str | Path, expected_size: Sequence[int] | int | None = None
) -> dict[str, list[np.ndarray]]:
    """Load an evaluation mask set written by :func:`save_eval_masks`, checking it.

    Every mask must exist, have the manifest's size (and ``expected_size`` when given),
    the recorded content hash, and a hole ratio inside its bucket.

    Args:
        folder: Folder holding ``manifest.json``.
        expected_size: ``(H, W)`` or a side the masks must have, or None.

    Returns:
        Bucket name -> list of boolean hole masks.

    Raises:
        InputError: Missing/corrupt manifest or file, a wrong shape, hash or ratio.
    """
    folder = Path(folder)
    manifest = read_eval_manifest(folder)
    shape = tuple(manifest["size"])
    if expected_size is not None and shape != _check_shape(expected_size):
        raise InputError(
            f"Evaluation masks in {folder} are {shape} but {_check_shape(expected_size)} "
            "was requested; use another folder or the matching size."
        )
    result: dict[str, list[np.ndarray]] = {}
    for name, entry in manifest["buckets"].items():
        low, high = entry["range"]
        masks = []
        for item in entry["masks"]:
            m = load_mask(folder / item["file"], expected_shape=shape)
            if mask_sha256(m) != item["sha256"]:
                raise InputError(
                    f"Mask {folder / item['file']} does not match its hash in the manifest; "
                    "the set was modified. Rebuild it in a new folder."
                )
            r = hole_ratio(m)
            if not (low < r <= high):
                raise InputError(
                    f"Mask {folder / item['file']} has hole ratio {r:.4f}, outside its "
                    f"bucket ({low}, {high}]."
                )
            masks.append(m)
        result[name] = masks
    return result


def get_eval_masks(
    folder: str | Path, size: Sequence[int] | int, per_bucket: int, seed: int = 0
) -> dict[str, list[np.ndarray]]:
    """Load the evaluation set in ``folder`` if it matches, else build and save it there.

    A folder that holds a set made with another seed, size or generator version, or with
    fewer masks per bucket, is refused rather than overwritten. A larger set is trimmed
    to ``per_bucket`` masks per bucket (they are the same masks).

    Raises:
        InputError: The folder holds a different set.
    """
    folder = Path(folder)
    shape = _check_shape(size)
    if (folder / _MANIFEST).is_file():
        man = read_eval_manifest(folder)
        same = (
            man.get("seed") == int(seed)
            and tuple(man.get("size", ())) == shape
            and man.get("generator_version") == GENERATOR_VERSION
            and set(man.get("buckets", {})) == set(BUCKETS)
            and int(man.get("per_bucket", 0)) >= int(per_bucket)
        )
        if not same:
            raise InputError(
                f"{folder} holds evaluation masks made with seed={man.get('seed')}, "
                f"size={man.get('size')}, per_bucket={man.get('per_bucket')}, generator "
                f"version {man.get('generator_version')}; requested seed={seed}, "
                f"size={list(shape)}, per_bucket={per_bucket}, version {GENERATOR_VERSION}. "
                "Use another folder or delete this one."
            )
        loaded = load_eval_masks(folder, shape)
        return {k: v[: int(per_bucket)] for k, v in loaded.items()}
    masks = make_eval_masks(shape, per_bucket, seed)
    save_eval_masks(folder, masks, seed=seed)
    return masks
