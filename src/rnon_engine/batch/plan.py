"""The plan of a ``rnon-batch`` run: blocks of output chunks and which of them hold holes.

A *block* is the unit of work and of resumption. It is aligned to the output's write
chunks (shards when sharded) so that every chunk is written by exactly one task (zarr has
no cross-process locks). Along the leading axes (T, Z, separate channels...) a block is one
chunk; along Y and X it spans the whole plane, so the engine sees every hole with all its
context and there are no seams. Only when a whole-plane block would exceed the memory
budget (``max_block_mb``) and the data is chunked in Y/X is the plane cut into YX chunks;
each task then reads its chunk plus a ``halo`` of context on every side and writes the
chunk alone. The colour axis of RGB data is never cut.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from rnon_engine.batch.io import ImageInfo, open_array
from rnon_engine.batch.masks import MaskInfo, mask_window
from rnon_engine.batch.regions import read_region
from rnon_engine.errors import InputError

__all__ = ["Block", "Plan", "check_plan", "make_blocks", "plane_label", "scan_holes", "fingerprint"]


@dataclass(frozen=True)
class Block:
    """One unit of work.

    Attributes:
        index: Position in the plan (names its resume marker).
        region: ``(start, stop)`` per INPUT dimension: what the task writes.
        window: ``(start, stop)`` per dimension: what it reads (region plus halo in YX).
        holes: Hole pixels in ``region`` (-1: not known yet, the task finds out).
        hole_planes: Planes of ``region`` with holes (-1: unknown).
        tiles: Engine tiles (``tile``-sized squares of a plane) holding holes (-1: unknown).
        digest: Hash of the region's boolean mask ("" when not scanned).
        full_planes: INPUT indices (leading axes) of the planes whose part in ``region``
            the mask covers entirely (the whole plane, unless planes are cut in YX).
        nonfinite: ``(plane, count)`` of the planes with NaN or infinite pixels outside the
            mask (found by a scan that read INPUT's values).
    """

    index: int
    region: tuple[tuple[int, int], ...]
    window: tuple[tuple[int, int], ...]
    holes: int = -1
    hole_planes: int = -1
    tiles: int = -1
    digest: str = ""
    full_planes: tuple[tuple[int, ...], ...] = ()
    nonfinite: tuple[tuple[tuple[int, ...], int], ...] = ()

    def slices(self, which: str = "region") -> tuple[slice, ...]:
        """The region (or window) as a tuple of slices."""
        return tuple(slice(a, b) for a, b in getattr(self, which))


@dataclass(frozen=True)
class Plan:
    """All blocks of a run, plus the layout choices made."""

    blocks: tuple[Block, ...]
    step: tuple[int, ...]
    split_yx: bool
    halo: int

    @property
    def known(self) -> bool:
        """True when every block's hole count is known."""
        return all(b.holes >= 0 for b in self.blocks)

    @property
    def mask_digest(self) -> str:
        """Hash of the whole mask as the blocks see it ("" unless scanned).

        It goes into the output's fingerprint, so an output made with another mask (a
        repair label saved again from napari, say) is never taken for a finished run.
        """
        if not self.blocks or any(not b.digest for b in self.blocks):
            return ""
        return fingerprint({"blocks": [b.digest for b in self.blocks]})


def make_blocks(image: ImageInfo, *, halo: int = 128, max_block_mb: float = 512.0) -> Plan:
    """Cut INPUT into blocks aligned to its write chunks (see the module docstring)."""
    shape, wc = image.shape, image.write_chunks
    y, x, c = image.y, image.x, image.color_axis
    step = [shape[d] if d in (y, x, c) else max(1, min(wc[d], shape[d])) for d in range(len(shape))]
    itemsize = np.dtype(image.dtype).itemsize
    nbytes = float(np.prod(step)) * itemsize
    split = nbytes > max_block_mb * 2**20 and (wc[y] < shape[y] or wc[x] < shape[x])
    if split:
        step[y], step[x] = min(wc[y], shape[y]), min(wc[x], shape[x])
    ranges = [range(0, shape[d], step[d]) for d in range(len(shape))]
    blocks = []
    for i, starts in enumerate(itertools.product(*ranges)):
        region = tuple((s, min(s + step[d], shape[d])) for d, s in enumerate(starts))
        window = list(region)
        if split:
            for d in (y, x):
                a, b = region[d]
                window[d] = (max(0, a - halo), min(shape[d], b + halo))
        blocks.append(Block(i, region, tuple(window)))
    return Plan(tuple(blocks), tuple(step), split, halo if split else 0)


def _count(image: ImageInfo, block: Block, m: np.ndarray, tile: int) -> Block:
    """Fill a block's hole statistics from its (broadcastable) region mask ``m``."""
    y, x, c = image.y, image.x, image.color_axis
    lead = image.lead_axes
    full = tuple(1 if d == c else b - a for d, (a, b) in enumerate(block.region))
    planes_any = m.any(axis=(y, x), keepdims=True)
    lead_shape = [full[d] for d in lead]
    per_plane = np.broadcast_to(
        planes_any.reshape([m.shape[d] for d in lead]) if lead else planes_any.reshape(()),
        lead_shape,
    )
    hole_planes = int(np.count_nonzero(per_plane))
    # holes: pixels per plane times broadcast factor
    factor = int(np.prod(full)) // max(1, int(np.prod(m.shape)))
    holes = int(np.count_nonzero(m)) * factor
    # tiles with holes per plane, on a grid of `tile` pixels from the region's corner
    h, w = m.shape[y], m.shape[x]
    ph, pw = -h % tile, -w % tile
    mm = np.moveaxis(m, (y, x), (-2, -1))
    mm = mm.reshape((-1, h, w))
    mm = np.pad(mm, ((0, 0), (0, ph), (0, pw)))
    grid = mm.reshape(mm.shape[0], (h + ph) // tile, tile, (w + pw) // tile, tile).any(axis=(2, 4))
    tiles = int(np.count_nonzero(grid)) * (int(np.prod(lead_shape)) // max(1, mm.shape[0]))
    h = hashlib.sha256(repr(m.shape).encode())
    h.update(np.packbits(np.asarray(m, dtype=bool)).tobytes())
    return Block(
        block.index, block.region, block.window, holes, hole_planes, tiles, h.hexdigest()[:32]
    )


def _lead_indices(image: ImageInfo, block: Block, flags: np.ndarray) -> list[tuple[int, ...]]:
    """INPUT indices (leading axes) of the planes of ``block`` where ``flags`` is True.

    ``flags`` has INPUT's dimensions with Y, X and colour reduced to length 1 (and
    broadcast leading axes of length 1).
    """
    lead = image.lead_axes
    sizes = [b - a for a, b in block.region]
    per = np.broadcast_to(flags.reshape([flags.shape[d] for d in lead]), [sizes[d] for d in lead])
    return [
        tuple(block.region[d][0] + int(i) for d, i in zip(lead, at, strict=True))
        for at in np.argwhere(per)
    ]


def _check_planes(image: ImageInfo, block: Block, m: np.ndarray, data: np.ndarray | None) -> Block:
    """Record the block's planes that the engine would refuse (see :class:`Block`)."""
    y, x, c = image.y, image.x, image.color_axis
    full = _lead_indices(image, block, m.all(axis=(y, x), keepdims=True))
    bad: list[tuple[tuple[int, ...], int]] = []
    if data is not None and data.dtype.kind == "f":
        nonfinite = ~np.isfinite(data)
        if c is not None:
            nonfinite = nonfinite.any(axis=c, keepdims=True)
        nonfinite &= ~m
        counts = np.count_nonzero(nonfinite, axis=(y, x), keepdims=True)
        planes = _lead_indices(image, block, counts > 0)
        bad = list(zip(planes, (int(n) for n in counts[counts > 0]), strict=True))
    return replace(block, full_planes=tuple(full), nonfinite=tuple(bad))


def scan_holes(
    image: ImageInfo,
    mask: MaskInfo,
    plan: Plan,
    *,
    tile: int = 512,
    threads: int = 2,
    check_values: bool = False,
) -> Plan:
    """Count hole pixels, hole planes and tiles with holes in every block, and find bad planes.

    Reads the mask (a broadcast 2-D mask once per YX region); with ``--mask-value``, or
    with ``check_values``, it reads INPUT too. Whole-plane blocks record the planes the mask
    covers entirely; a scan that read INPUT records the planes with NaN or infinite pixels
    outside the mask (see :class:`Block`).
    """
    cache: dict[Any, np.ndarray] = {}
    read_input = mask.ref is None or (check_values and np.dtype(image.dtype).kind == "f")

    def read(block: Block) -> tuple[np.ndarray, np.ndarray | None]:
        region = block.slices()
        data = None
        if read_input:
            with open_array(image.ref) as arr:
                data = read_region(arr, image.ref, region, "INPUT")
        if mask.ref is None:
            return mask_window(mask, image, region, None, data), data
        if mask.broadcast:
            key = (block.region[image.y], block.region[image.x])
            if key not in cache:
                with open_array(mask.ref) as marr:
                    cache[key] = mask_window(mask, image, region, marr, None)
            return cache[key], data
        with open_array(mask.ref) as marr:
            return mask_window(mask, image, region, marr, None), data

    def one(block: Block) -> Block:
        m, data = read(block)
        return _check_planes(image, _count(image, block, m, tile), m, data)

    if mask.broadcast and not read_input:
        blocks = tuple(one(b) for b in plan.blocks)
    else:
        with ThreadPoolExecutor(max(1, threads)) as pool:
            blocks = tuple(pool.map(one, plan.blocks))
    return Plan(blocks, plan.step, plan.split_yx, plan.halo)


def _planes_text(planes: list[str]) -> str:
    more = f" and {len(planes) - 5} more" if len(planes) > 5 else ""
    return ", ".join(planes[:5]) + more


def check_plan(
    image: ImageInfo, plan: Plan, mask_value: float | None, *, require_holes: bool = True
) -> None:
    """Refuse, before anything is written, a plan the engine would stop in the middle of.

    Args:
        image: INPUT's description.
        plan: The scanned plan (see :func:`~rnon_engine.batch.plan.scan_holes`).
        mask_value: The ``--mask-value`` (None with a mask array).
        require_holes: Refuse a ``--mask-value`` that matches no pixel.

    Raises:
        InputError: the mask covers a whole plane, INPUT has NaN or infinite pixels
            outside the mask, or ``--mask-value`` matches no pixel; the message names the
            planes and says what to do.
    """
    # A plane is covered when every block holding a part of it is (one block, unless the
    # planes are cut into YX chunks).
    parts = 1
    if plan.split_yx:
        for d in (image.y, image.x):
            parts *= -(-image.shape[d] // plan.step[d])
    covered = Counter(p for b in plan.blocks for p in b.full_planes)
    full = [plane_label(image, p) for p, n in sorted(covered.items()) if n == parts]
    if full:
        why = (
            f"every pixel of it equals --mask-value {mask_value:g} (saturated or dead)"
            if mask_value is not None
            else "the mask covers every pixel of it"
        )
        raise InputError(
            f"{image.path}: {_planes_text(full)}: {why}, so there is nothing to repair it "
            f"from ({len(full)} plane(s)). Leave some pixels of each plane out of the mask, or "
            "leave such planes out of INPUT. Nothing was written."
        )
    bad = [f"{plane_label(image, p)} ({n} pixels)" for b in plan.blocks for p, n in b.nonfinite]
    if bad:
        raise InputError(
            f"{image.path}: NaN or infinite pixels outside the mask in {len(bad)} plane(s): "
            f"{_planes_text(bad)}. Add them to the mask to repair them (or replace them). "
            "Nothing was written."
        )
    if require_holes and mask_value is not None and not any(b.holes for b in plan.blocks):
        raise InputError(
            f"no pixel of {image.path} equals --mask-value {mask_value:g}, so there is nothing "
            f"to repair (INPUT is {image.dtype}). Check the value (e.g. 65535 for saturated "
            "uint16 pixels, 0 for dead ones). Nothing was written."
        )


def fingerprint(parts: dict[str, Any]) -> str:
    """A short, stable hash of everything that determines the output's pixels."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def plane_label(image: ImageInfo, index: tuple[int, ...]) -> str:
    """A plane of INPUT by its leading-axis indices: ``"plane [4]"``, ``"plane [T=1, Z=0]"``.

    Args:
        image: INPUT's description.
        index: One index per leading axis (every axis but Y, X and colour), in order.
    """
    lead = image.lead_axes
    if not lead:
        return "the image"
    parts = [
        str(i) if image.axes[d] == "Q" else f"{image.axes[d]}={i}"
        for d, i in zip(lead, index, strict=True)
    ]
    return "plane [" + ", ".join(parts) + "]"
