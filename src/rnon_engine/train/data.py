"""Training data: image folders, random crops, crop-size schedules, paired hole masks.

(Over 600 lines on purpose: reading, cropping, the per-step seeding and the samplers form
one pipeline whose pieces share the sample key and the seeding rule; most of the length is
their documentation.)

Reading images (:func:`read_image`):
    PNG, JPEG, WebP and BMP are decoded with OpenCV (which keeps 16-bit PNGs at 16 bits),
    TIFF with ``tifffile``. The result is always ``float32`` ``(H, W, 3)`` in ``[0, 1]``:

    * **Intensity**: integer images are divided by their dtype's maximum (``uint8`` by 255,
      ``uint16`` by 65535), so a 12-bit image stored in ``uint16`` stays dark; this keeps the
      mapping fixed and predictable (no per-image stretch that would change with content).
      Boolean images map to 0/1. Float images already inside ``[0, 1]`` are kept; other
      float images are min-max scaled per image.
    * **Training crops** (:class:`ImageFolderDataset`) map integer images other than
      ``uint8`` (16-bit microscopy...) as inference does (:mod:`rnon_engine.inference.intensity`):
      the 0.1th-99.9th percentiles of the image's non-excluded pixels go to ``[0, 1]``, so
      a model fine-tuned on 12-bit data sees the contrast it will be given at inference.
    * **Channels**: grayscale (or gray + alpha) is replicated to 3 channels; RGB is kept;
      RGBA drops the alpha channel (it is not composited, which would invent a background),
      and pixels whose alpha is 0 are returned as *excluded* (see below), because their
      colour is undefined. Images with more than 4 channels are refused.
    * **Stacks**: a TIFF with extra leading axes (``Z``, ``T``...) gives its first plane;
      ``(C, H, W)`` TIFFs with ``C`` in 1..4 are moved to channels-last.

Datasets:
    :class:`ImageFolderDataset` lists a folder recursively (sorted, hidden entries skipped)
    and yields random crops as dicts with ``image`` (``[3, S, S]``), ``valid_target``
    (``[1, S, S]``, 1 = a real pixel that may serve as a target, 0 = excluded) and
    ``index``. Crops use scale jitter (a region of ``S / scale`` source pixels resized to
    ``S``), reflection padding for images smaller than the region, and random flips.

    :class:`InpaintingDataset` wraps it and adds a free-form ``hole`` mask per sample
    (:func:`rnon_engine.train.masks.random_mask`) and the network's ``mask`` (1 = known, 0 =
    hole). Excluded pixels (bad pixels given by an ``exclude_dir`` of masks, or transparent
    pixels) are never known input and never targets: ``mask = (1 - hole) * valid_target``.

Reproducibility and DataLoader workers:
    Every sample's randomness comes from a seed carried by its key, not from global state,
    so results do not depend on the number of workers or their order. A key is either an
    ``int`` index (the seed is then derived from ``(dataset seed, epoch, index)``; call
    :meth:`ImageFolderDataset.set_epoch` each epoch) or a :class:`SampleKey`
    ``(index, seed, crop_size)``. :class:`TrainBatchSampler` yields lists of such keys, one
    fresh seed per draw and the crop size of the step from a :class:`CropSchedule`, which
    makes the small-to-large crop schedule work with any number of workers and makes a
    resumed run (``start_step``) draw exactly the batches of an uninterrupted one.

    :meth:`ImageFolderDataset.set_crop_size` is the simple alternative for ``num_workers=0``
    (worker processes keep the copy they were started with).

Corrupt files:
    Listing reads each file's header; files that cannot be opened are logged (warning with
    the path) and left out. A file that fails later, while decoding, is logged once and
    replaced by the next readable image, so training never stops on one bad file. A folder
    without any readable image raises :class:`~rnon_engine.errors.InputError` naming the
    folder and the accepted extensions.
"""

from __future__ import annotations

import bisect
import logging
import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, WeightedRandomSampler

from rnon_engine.errors import InputError
from rnon_engine.train.masks import MASK_EXTENSIONS, fine_damage_mask, load_mask, random_mask

__all__ = [
    "IMAGE_EXTENSIONS",
    "CropSchedule",
    "ImageFolderDataset",
    "InpaintingDataset",
    "SampleKey",
    "TrainBatchSampler",
    "list_images",
    "balanced_sampler",
    "read_image",
    "read_image_raw",
    "source_weights",
    "to_unit_float",
]

logger = logging.getLogger(__name__)

#: File name endings the datasets accept (case-insensitive).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")
_TIFF = (".tif", ".tiff")
ROOT_SOURCE = "(root)"


class SampleKey(NamedTuple):
    """Key of one sample: which image, the seed of its randomness, and the crop side."""

    index: int
    seed: int
    crop_size: int


# ------------------------------------------------------------------------------ reading


def read_image_raw(path: str | Path) -> np.ndarray:
    """Decode an image file as stored: ``(H, W)`` or ``(H, W, C)``, its own dtype.

    Colour images come back in RGB(A) order. TIFF stacks give their first plane.

    Raises:
        InputError: The file is missing, unreadable or not an image this module handles.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in _TIFF:
            import tifffile

            data = np.asarray(tifffile.imread(path))
        else:
            # imdecode on the bytes handles any path (non-ASCII on Windows included).
            buf = np.fromfile(path, dtype=np.uint8)
            data = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
            if data is None:
                raise ValueError("OpenCV could not decode it")
            if data.ndim == 3 and data.shape[2] == 3:
                data = cv2.cvtColor(data, cv2.COLOR_BGR2RGB)
            elif data.ndim == 3 and data.shape[2] == 4:
                data = cv2.cvtColor(data, cv2.COLOR_BGRA2RGBA)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the file's fault
        raise InputError(f"Could not read image {path}: {exc}") from exc
    return _to_hwc(data, path)


def _to_hwc(data: np.ndarray, path: Path) -> np.ndarray:
    if data.ndim == 3 and data.shape[0] in (1, 2, 3, 4) and data.shape[-1] > 4:
        data = np.moveaxis(data, 0, -1)
    while data.ndim > 3 or (data.ndim == 3 and data.shape[-1] > 4):
        data = data[0]  # first plane of a stack
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 2 and not (data.ndim == 3 and data.shape[-1] in (2, 3, 4)):
        raise InputError(f"Image {path} has shape {data.shape}; expected (H, W) or (H, W, C<=4).")
    if min(data.shape[:2]) < 1:
        raise InputError(f"Image {path} is empty (shape {data.shape}).")
    return data


def to_unit_float(data: np.ndarray) -> np.ndarray:
    """Scale pixel values to ``float32`` in ``[0, 1]`` by the module's documented rule.

    Integers are divided by their dtype's maximum; booleans map to 0/1; floats inside
    ``[0, 1]`` are kept, other floats are min-max scaled (a constant image becomes 0).
    """
    data = np.asarray(data)
    if data.dtype == bool:
        return data.astype(np.float32)
    if data.dtype.kind == "u":
        return data.astype(np.float32) / np.float32(np.iinfo(data.dtype).max)
    if data.dtype.kind == "i":
        info = np.iinfo(data.dtype)
        out = data.astype(np.float32) / np.float32(info.max)
        return np.clip(out, 0.0, 1.0)
    if data.dtype.kind == "f":
        out = data.astype(np.float32)
        finite = np.isfinite(out)
        out = np.where(finite, out, 0.0).astype(np.float32)
        lo, hi = (float(out.min()), float(out.max())) if out.size else (0.0, 0.0)
        if lo >= 0.0 and hi <= 1.0:
            return out
        if hi > lo:
            return ((out - lo) / (hi - lo)).astype(np.float32)
        return np.zeros_like(out)
    raise InputError(f"Cannot use pixel type {data.dtype}; expected integers, floats or bool.")


def _split_channels(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (colour (H,W,3) in raw dtype, alpha-valid (H,W) bool or None)."""
    if raw.ndim == 2:
        return np.repeat(raw[..., None], 3, axis=2), None
    c = raw.shape[2]
    if c == 2:
        return np.repeat(raw[..., :1], 3, axis=2), raw[..., 1] != 0
    if c == 3:
        return raw, None
    return raw[..., :3], raw[..., 3] != 0


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as ``float32`` ``(H, W, 3)`` in ``[0, 1]`` (rules in the module doc).

    Alpha is dropped; use :class:`ImageFolderDataset` to also get transparent pixels as
    excluded.
    """
    colour, _ = _split_channels(read_image_raw(path))
    return to_unit_float(colour)


def _header_shape(path: Path) -> tuple[int, int]:
    """(H, W) from the file header, without decoding the pixels."""
    if path.suffix.lower() in _TIFF:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
            shape = tuple(tif.series[0].shape) if tif.series else tuple(page.shape)
            axes = tif.series[0].axes if tif.series else ""
        if "Y" in axes and "X" in axes:
            return int(shape[axes.index("Y")]), int(shape[axes.index("X")])
        return int(page.shape[0]), int(page.shape[1])
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
    return int(h), int(w)


# ------------------------------------------------------------------------ crop schedule


class CropSchedule:
    """Crop side as a step function of the training step ("resolution from small to large").

    Args:
        milestones: ``{first_step: crop_size}`` (or pairs); step 0 must be covered.

    Example:
        ``CropSchedule({0: 128, 20000: 192, 50000: 256}).size_at(30000) == 192``.
    """

    def __init__(self, milestones: Mapping[int, int] | Sequence[tuple[int, int]] | int) -> None:
        if isinstance(milestones, (int, np.integer)):
            milestones = {0: int(milestones)}
        items = sorted(
            (int(s), int(c))
            for s, c in (milestones.items() if isinstance(milestones, Mapping) else milestones)
        )
        if not items or items[0][0] != 0:
            raise InputError(f"A crop schedule must start at step 0, got {items}.")
        if any(c < 8 for _, c in items):
            raise InputError(f"Crop sizes must be at least 8 pixels, got {items}.")
        if len({s for s, _ in items}) != len(items):
            raise InputError(f"A crop schedule names a step twice: {items}.")
        self.steps = [s for s, _ in items]
        self.sizes = [c for _, c in items]

    def size_at(self, step: int) -> int:
        """Crop side used at training step ``step``."""
        return self.sizes[bisect.bisect_right(self.steps, int(step)) - 1]

    def __repr__(self) -> str:
        return f"CropSchedule({dict(zip(self.steps, self.sizes, strict=True))})"


# ------------------------------------------------------------------------------ dataset


def list_images(root: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files under ``root`` (recursive, follows links, hidden entries skipped).

    Folders are walked in sorted order and each folder's files come sorted, so the list is
    deterministic; files of a folder come before those of its subfolders.
    """
    exts = {e.lower() for e in extensions}
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in exts:
                found.append(Path(dirpath) / name)
    return found


def _seed_of(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


class ImageFolderDataset(Dataset):
    """Random crops from every image under a folder (recursive).

    Args:
        root: Folder to scan. Its top-level subfolders are the *sources* (see
            :func:`source_weights`); images directly in it form the source ``"(root)"``.
        crop_size: Side ``S`` of the square crops.
        scale_jitter: ``(low, high)`` range of the scale factor; a crop covers
            ``S / scale`` source pixels resized to ``S`` (scale < 1 zooms out). The region
            is capped at the image's shorter side, so small images are not padded more
            than needed. ``None`` or ``(1, 1)`` disables it.
        hflip: Mirror left-right with probability 0.5.
        vflip: Mirror top-bottom with probability 0.5 (off by default: photographs have
            an up and a down).
        extensions: Accepted file endings.
        exclude_dir: Optional folder mirroring ``root`` with masks of pixels to exclude
            (bad pixels): for ``root/a/b.jpg`` the mask is ``exclude_dir/a/b.<png|tif|tiff|npy>``
            (nonzero = excluded); images without one exclude nothing. Shapes are checked
            when listing.
        exclude_value: Optional raw pixel value marking bad pixels: where any colour
            channel of the stored image equals it, the pixel is excluded (as by a mask in
            ``exclude_dir``; both may be given).
        seed: Base seed for samples addressed by a plain index.
        cache_size: How many decoded images to keep in memory (per process); 0 = none.
        min_size: Images whose shorter side is below this are left out (logged).

    Raises:
        InputError: ``root`` is not a folder, holds no readable image, or an exclude mask
            does not match its image's shape.
    """

    def __init__(
        self,
        root: str | Path,
        crop_size: int = 256,
        scale_jitter: tuple[float, float] | None = (0.5, 1.0),
        hflip: bool = True,
        vflip: bool = False,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        exclude_dir: str | Path | None = None,
        seed: int = 0,
        cache_size: int = 0,
        min_size: int = 1,
        exclude_value: float | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"Image folder {self.root} does not exist or is not a folder.")
        if scale_jitter is None:
            scale_jitter = (1.0, 1.0)
        lo, hi = (float(v) for v in scale_jitter)
        if not (0.0 < lo <= hi):
            raise InputError(
                f"scale_jitter must be (low, high) with 0 < low <= high, got {scale_jitter}."
            )
        self.scale_jitter = (lo, hi)
        self.hflip = bool(hflip)
        self.vflip = bool(vflip)
        self.seed = int(seed)
        self.epoch = 0
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray | None]] = OrderedDict()
        self._failed: set[int] = set()
        self.exclude_value = None if exclude_value is None else float(exclude_value)
        self.exclude_dir = Path(exclude_dir) if exclude_dir is not None else None
        if self.exclude_dir is not None and not self.exclude_dir.is_dir():
            raise InputError(f"Exclude-mask folder {self.exclude_dir} does not exist.")
        self.set_crop_size(crop_size)

        self.paths: list[Path] = []
        self.shapes: list[tuple[int, int]] = []
        self.exclude_paths: list[Path | None] = []
        for path in list_images(self.root, extensions):
            try:
                shape = _header_shape(path)
            except Exception as exc:  # noqa: BLE001
                logger.warning("Skipping unreadable image %s: %s", path, exc)
                continue
            if min(shape) < min_size:
                logger.info("Skipping %s: %s is smaller than min_size=%d", path, shape, min_size)
                continue
            self.paths.append(path)
            self.shapes.append(shape)
            self.exclude_paths.append(self._find_exclude(path, shape))
        if not self.paths:
            raise InputError(
                f"No readable images in {self.root} (searched recursively for "
                f"{', '.join(extensions)})."
            )
        self.sources = [self._source_of(p) for p in self.paths]

    # -- configuration ------------------------------------------------------------------

    def set_crop_size(self, crop_size: int) -> None:
        """Set the crop side used for plain-index keys (affects this process only)."""
        crop_size = int(crop_size)
        if crop_size < 8:
            raise InputError(f"crop_size must be at least 8 pixels, got {crop_size}.")
        self.crop_size = crop_size

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch mixed into the seeds of plain-index keys."""
        self.epoch = int(epoch)

    def _source_of(self, path: Path) -> str:
        rel = path.relative_to(self.root)
        return rel.parts[0] if len(rel.parts) > 1 else ROOT_SOURCE

    def _find_exclude(self, path: Path, shape: tuple[int, int]) -> Path | None:
        if self.exclude_dir is None:
            return None
        rel = path.relative_to(self.root).with_suffix("")
        for ext in MASK_EXTENSIONS:
            cand = self.exclude_dir / rel.parent / (rel.name + ext)
            if cand.is_file():
                load_mask(cand, expected_shape=shape)  # InputError names both shapes
                return cand
        return None

    # -- loading ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Colour (H,W,3) raw dtype and valid-target (H,W) bool or None."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        colour, valid = _split_channels(read_image_raw(self.paths[index]))
        if self.exclude_value is not None:
            bad = np.any(colour == self.exclude_value, axis=-1)
            valid = ~bad if valid is None else valid & ~bad
        if colour.shape[:2] != self.shapes[index]:
            raise InputError(
                f"Image {self.paths[index]} decoded to {colour.shape[:2]}, its header says "
                f"{self.shapes[index]}."
            )
        ex_path = self.exclude_paths[index]
        if ex_path is not None:
            excluded = load_mask(ex_path, expected_shape=colour.shape[:2])
            valid = ~excluded if valid is None else valid & ~excluded
        if colour.dtype.kind == "f":
            colour = to_unit_float(colour)  # per-image rule, before cropping
        elif colour.dtype.kind in "ui" and colour.dtype != np.uint8:
            from rnon_engine.inference.intensity import intensity_map

            known = np.ones(colour.shape[:2], bool) if valid is None else valid
            if known.any():  # the inference rule: percentiles of the known pixels
                colour = intensity_map(colour, known).to_unit(colour)
        if self.cache_size > 0:
            self._cache[index] = (colour, valid)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return colour, valid

    def _key(self, key: int | SampleKey | Sequence[int]) -> SampleKey:
        if isinstance(key, (int, np.integer)):
            index = int(key)
            return SampleKey(index, _seed_of(self.seed, self.epoch, index), self.crop_size)
        index, seed, crop = (int(k) for k in key)
        return SampleKey(index, seed, crop)

    def sample(self, key: int | SampleKey | Sequence[int]) -> dict[str, Any]:
        """Build the sample for ``key`` (same as ``dataset[key]``)."""
        key = self._key(key)
        if not 0 <= key.index < len(self):
            raise IndexError(f"Index {key.index} out of range for {len(self)} images.")
        index = key.index
        for _ in range(len(self)):
            if index not in self._failed:
                try:
                    colour, valid = self._load(index)
                    break
                except InputError as exc:
                    self._failed.add(index)
                    logger.warning("Skipping image that failed to load: %s", exc)
            index = (index + 1) % len(self)
        else:
            raise InputError(f"None of the {len(self)} images under {self.root} could be read.")
        rng = np.random.default_rng(key.seed)
        image, vt = self._crop(colour, valid, key.crop_size, rng)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "valid_target": torch.from_numpy(vt[None]),
            "index": index,
        }

    def __getitem__(self, key: int | SampleKey | Sequence[int]) -> dict[str, Any]:
        return self.sample(key)

    def _crop(
        self,
        colour: np.ndarray,
        valid: np.ndarray | None,
        size: int,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        h, w = colour.shape[:2]
        lo, hi = self.scale_jitter
        scale = float(rng.uniform(lo, hi)) if hi > lo else lo
        region = max(1, int(round(size / scale)))
        region = max(min(region, min(h, w)), min(size, region))
        # Region top-left in the (possibly padded) image.
        y0 = int(rng.integers(0, max(h - region, 0) + 1))
        x0 = int(rng.integers(0, max(w - region, 0) + 1))
        patch = colour[y0 : y0 + region, x0 : x0 + region]
        vpatch = None if valid is None else valid[y0 : y0 + region, x0 : x0 + region]
        patch = to_unit_float(patch)
        if vpatch is None:
            vpatch = np.ones(patch.shape[:2], dtype=np.float32)
        else:
            vpatch = vpatch.astype(np.float32)
        ph, pw = patch.shape[:2]
        if ph < region or pw < region:
            # Place the image at a random offset inside the padded square.
            oy = int(rng.integers(0, region - ph + 1))
            ox = int(rng.integers(0, region - pw + 1))
            pad = ((oy, region - ph - oy), (ox, region - pw - ox))
            patch = np.pad(patch, (*pad, (0, 0)), mode="symmetric")
            vpatch = np.pad(vpatch, pad, mode="symmetric")
        if region != size:
            interp = cv2.INTER_AREA if region > size else cv2.INTER_LINEAR
            patch = cv2.resize(patch, (size, size), interpolation=interp)
            vpatch = cv2.resize(vpatch, (size, size), interpolation=interp)
            if patch.ndim == 2:
                patch = patch[..., None]
        vt = (vpatch >= 1.0 - 1e-6).astype(np.float32)
        if self.hflip and rng.random() < 0.5:
            patch, vt = patch[:, ::-1], vt[:, ::-1]
        if self.vflip and rng.random() < 0.5:
            patch, vt = patch[::-1], vt[::-1]
        patch = np.clip(patch, 0.0, 1.0, dtype=np.float32)
        return np.ascontiguousarray(patch), np.ascontiguousarray(vt)


class InpaintingDataset(Dataset):
    """Crops from an :class:`ImageFolderDataset` paired with free-form hole masks.

    Each sample is a dict with ``image`` ``[3,S,S]`` in ``[0, 1]``, ``hole`` ``[1,S,S]``
    (1 = generated hole), ``mask`` ``[1,S,S]`` (network convention: 1 = known input, 0 =
    to fill; excluded pixels are 0), ``valid_target`` ``[1,S,S]`` (1 = may serve as a
    target) and ``index``. The mask is drawn from the sample's key seed, so the same key
    gives the same image crop and the same mask.

    Args:
        images: The image dataset.
        ratio_range: Hole-ratio range of :func:`rnon_engine.train.masks.random_mask`.
        fine_damage: Probability that a sample's mask is fine damage
            (:func:`rnon_engine.train.masks.fine_damage_mask`: dust, dead pixels, thin scratches)
            instead of free-form strokes and blobs. At 0 the masks are exactly those drawn
            without the option.
        fine_ratio: Hole-ratio range of the fine-damage masks.
    """

    def __init__(
        self,
        images: ImageFolderDataset,
        ratio_range: tuple[float, float] = (0.01, 0.60),
        fine_damage: float = 0.0,
        fine_ratio: tuple[float, float] = (0.002, 0.03),
    ) -> None:
        self.images = images
        self.ratio_range = (float(ratio_range[0]), float(ratio_range[1]))
        if not (0.0 <= self.ratio_range[0] < self.ratio_range[1] <= 1.0):
            raise InputError(f"ratio_range must satisfy 0 <= low < high <= 1, got {ratio_range}.")
        if not 0.0 <= fine_damage <= 1.0:
            raise InputError(f"fine_damage must be a probability in [0, 1], got {fine_damage}.")
        self.fine_damage = float(fine_damage)
        self.fine_ratio = (float(fine_ratio[0]), float(fine_ratio[1]))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: int | SampleKey | Sequence[int]) -> dict[str, Any]:
        key = self.images._key(key)
        sample = self.images.sample(key)
        size = sample["image"].shape[-1]
        rng = np.random.default_rng([key.seed, 0x6D61736B])  # independent of the crop's stream
        fine = (
            self.fine_damage > 0
            and np.random.default_rng([key.seed, 0x66696E65]).random() < self.fine_damage
        )
        if fine:
            hole = fine_damage_mask((size, size), rng, self.fine_ratio)
        else:
            hole = random_mask((size, size), rng, self.ratio_range)
        hole_t = torch.from_numpy(hole[None].astype(np.float32))
        sample["hole"] = hole_t
        sample["mask"] = (1.0 - hole_t) * sample["valid_target"]
        return sample

    # Delegates so a trainer can treat both datasets alike.
    def set_crop_size(self, crop_size: int) -> None:
        """See :meth:`ImageFolderDataset.set_crop_size`."""
        self.images.set_crop_size(crop_size)

    def set_epoch(self, epoch: int) -> None:
        """See :meth:`ImageFolderDataset.set_epoch`."""
        self.images.set_epoch(epoch)

    @property
    def sources(self) -> list[str]:
        """Source name of each image."""
        return self.images.sources


# ------------------------------------------------------------------------------ sampling


def source_weights(
    dataset: ImageFolderDataset | InpaintingDataset, power: float = 1.0
) -> np.ndarray:
    """Per-image sampling weights that balance the top-level sources.

    Source ``s`` with ``n_s`` images gets total weight proportional to ``n_s ** (1 - power)``:
    ``power=1`` gives every source the same total probability, ``power=0`` every image the
    same probability, values between soften the balance.

    Returns:
        ``float64`` weights, one per image, summing to 1.
    """
    sources = dataset.sources
    names, inverse, counts = np.unique(np.asarray(sources), return_inverse=True, return_counts=True)
    del names
    per_image = counts[inverse].astype(np.float64) ** (-float(power))
    return per_image / per_image.sum()


def balanced_sampler(
    dataset: ImageFolderDataset | InpaintingDataset,
    num_samples: int | None = None,
    power: float = 1.0,
    generator: torch.Generator | None = None,
) -> WeightedRandomSampler:
    """A :class:`~torch.utils.data.WeightedRandomSampler` over :func:`source_weights`.

    Indices repeat within an epoch; with plain-index keys a repeated index repeats the same
    crop, so prefer :class:`TrainBatchSampler` (fresh seed per draw) for training.
    """
    weights = torch.as_tensor(source_weights(dataset, power), dtype=torch.double)
    return WeightedRandomSampler(
        weights, num_samples or len(weights), replacement=True, generator=generator
    )


class TrainBatchSampler(Sampler[list[SampleKey]]):
    """Endless, seeded, resumable batches of :class:`SampleKey` for training.

    Batch ``k`` (counting from step 0) depends only on ``(seed, k)``: indices are drawn
    with replacement from ``weights`` (uniform when None), each draw gets its own sample
    seed, and all keys carry the crop size of step ``k`` from ``schedule``. Use it as
    ``DataLoader(dataset, batch_sampler=TrainBatchSampler(...), num_workers=n)``.

    Args:
        num_items: Dataset length.
        batch_size: Samples per batch.
        schedule: A :class:`CropSchedule` or a fixed crop side.
        weights: Per-item sampling weights (e.g. :func:`source_weights`), or None.
        seed: Seed of the whole stream.
        start_step: First step to yield (resume).
        max_steps: Stop after this step (exclusive), or None for endless.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        schedule: CropSchedule | int,
        weights: Sequence[float] | np.ndarray | None = None,
        seed: int = 0,
        start_step: int = 0,
        max_steps: int | None = None,
    ) -> None:
        if num_items < 1 or batch_size < 1:
            raise InputError(
                f"num_items and batch_size must be >= 1, got {num_items}, {batch_size}."
            )
        self.num_items = int(num_items)
        self.batch_size = int(batch_size)
        self.schedule = schedule if isinstance(schedule, CropSchedule) else CropSchedule(schedule)
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (self.num_items,) or (w < 0).any() or w.sum() <= 0:
                raise InputError("weights must be one non-negative number per item, not all 0.")
            self.cdf = np.cumsum(w / w.sum())
            self.cdf[-1] = 1.0
        else:
            self.cdf = None
        self.seed = int(seed)
        self.start_step = int(start_step)
        self.max_steps = max_steps

    def batch(self, step: int) -> list[SampleKey]:
        """The keys of batch ``step``."""
        rng = np.random.default_rng([self.seed, int(step)])
        if self.cdf is None:
            idx = rng.integers(0, self.num_items, self.batch_size)
        else:
            idx = np.searchsorted(self.cdf, rng.random(self.batch_size), side="right")
            idx = np.minimum(idx, self.num_items - 1)
        seeds = rng.integers(0, 2**63 - 1, self.batch_size, dtype=np.int64)
        crop = self.schedule.size_at(step)
        return [SampleKey(int(i), int(s), crop) for i, s in zip(idx, seeds, strict=True)]

    def __iter__(self) -> Iterator[list[SampleKey]]:
        step = self.start_step
        while self.max_steps is None or step < self.max_steps:
            yield self.batch(step)
            step += 1

    def __len__(self) -> int:
        if self.max_steps is None:
            raise TypeError("An endless TrainBatchSampler has no length; pass max_steps.")
        return max(0, self.max_steps - self.start_step)
