"""One plane's run through its window plan: batching, blending, writing back, progress.

:class:`~rnon_engine.inference.Inpainter` makes one :class:`PlaneRun` per plane (or
channel group of a plane) and one :class:`Progress` per ``inpaint`` call; the run reads
windows from the plane, hands them to a fill function in batches and writes the owned hole
pixels of each result back, through the :class:`Blender` for the large holes' overlapping
windows. What is computed (the networks, a classical method) stays with the inpainter.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from rnon_engine.errors import Cancelled
from rnon_engine.inference.intensity import IntensityMap
from rnon_engine.inference.tiling import TilePlan, Window, gaussian_weights, hole_box

__all__ = ["BOX_SPREAD", "Blender", "PlaneRun", "Progress", "batches"]

#: A batch of packed windows ends where its holes' common box, times its windows, would
#: exceed this many times the sum of their own boxes (:func:`batches`).
BOX_SPREAD = 2.0

#: ``fill(crops [N,h,w,C] float32 in [0,1], holes [N,h,w] bool, window) -> [N,h,w,C]``;
#: ``window`` is the batch's first window (they all share its shape and kind).
FillFn = Callable[[np.ndarray, np.ndarray, Window], np.ndarray]


@dataclass
class Progress:
    """Windows done out of the call's total; reports them and honours ``cancel``.

    Attributes:
        total: Windows of the whole call.
        callback: ``callback(done, total)`` after every window, if given.
        cancel: Checked before every batch; True raises :class:`Cancelled`.
        done: Windows done so far.
    """

    total: int
    callback: Callable[[int, int], None] | None = None
    cancel: Callable[[], bool] | None = None
    done: int = 0

    def check(self) -> None:
        """Raise :class:`Cancelled` if ``cancel()`` says so."""
        if self.cancel is not None and self.cancel():
            raise Cancelled(f"inpainting cancelled after {self.done} of {self.total} windows")

    def step(self) -> None:
        """One more window done."""
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total)


@dataclass
class PlaneRun:
    """One plane (or channel group) being repaired.

    Attributes:
        src: ``H×W×C`` input view (never written).
        dst: ``H×W×C`` output view (hole pixels are written).
        hole: ``H×W`` bool hole mask.
        imap: The plane's intensity map (to [0, 1] and back).
        progress: The call's progress counter.
    """

    src: np.ndarray
    dst: np.ndarray
    hole: np.ndarray
    imap: IntensityMap
    progress: Progress

    def run(
        self,
        plan: TilePlan,
        fill: FillFn,
        *,
        batch_size: int,
        budget: int,
        zero_holes: bool = True,
        workers: int = 1,
        before_write: Callable[[], None] | None = None,
    ) -> None:
        """Compute every window of ``plan`` and write its owned hole pixels.

        Args:
            plan: The plane's window plan.
            fill: Computes a batch of windows of one shape (see :data:`FillFn`).
            batch_size: Windows per ``fill`` call; small packed and blended windows are
                batched further, as many as fit in ``budget`` pixels.
            budget: Pixels per batch of packed windows.
            zero_holes: Set hole pixels to 0 before ``fill`` (stage 1 ignores them;
                False when stage 2 alone runs on an already repaired image).
            workers: Batches computed at once, in threads (``fill`` must be thread-safe
                and release the GIL for its work: ONNX Runtime does). The results are
                written in order, on this thread, so the output does not depend on it.
            before_write: Called once, on this thread, before the first result is
                written, after the first batches were handed to the workers (the inpainter
                waits there for its copy of the image into ``dst``'s array, made while the
                workers compute).
        """
        ready = before_write

        def first_write() -> None:
            nonlocal ready
            if ready is not None:
                ready, call = None, ready
                call()

        def write(win: Window, values: np.ndarray) -> None:
            owned = plan.owned(win, self.hole)
            if owned.any():
                self.dst[win.slices][owned] = self.imap.from_unit(values[owned])

        blend = [w for w in plan.windows if w.blend]
        blender = None
        if blend:
            x0, x1 = min(w.x0 for w in blend), max(w.x1 for w in blend)
            blender = Blender(x0, x1, self.src.shape[-1], write)
        # Packed windows in any order: grouped by shape so that they batch, and by where
        # their holes lie in them, so that a batch's holes share a small box (the networks
        # compute their last layers in that box only); the blended ones last, in raster
        # order (the blender streams them row by row).
        boxes = {id(w): hole_box(self.hole[w.slices]) for w in plan.windows if w.packed}
        alone = sorted(
            (w for w in plan.windows if not w.blend),
            key=lambda w: (w.packed, w.shape, *(b // 4 for b in boxes.get(id(w), ()))),
        )

        def inputs(batch: list[Window]) -> tuple[np.ndarray, np.ndarray]:
            # One mapping for the batch: elementwise, so the same values as window by window.
            crops = self.imap.to_unit(np.stack([self.src[w.slices] for w in batch]))
            hmask = np.stack([self.hole[w.slices] for w in batch])
            if zero_holes:
                crops[hmask] = 0.0
            return crops, hmask

        def finish(batch: list[Window], results: np.ndarray) -> None:
            first_write()
            for win, res in zip(batch, results, strict=True):
                if win.blend:
                    blender.add(win, res)
                else:
                    write(win, res)
                self.progress.step()

        def compute(batch: list[Window]) -> np.ndarray:
            crops, hmask = inputs(batch)
            return fill(crops, hmask, batch[0])

        todo = batches(alone + blend, batch_size, budget, lambda w: boxes.get(id(w)))
        if workers <= 1:
            for batch in todo:
                self.progress.check()
                finish(batch, compute(batch))
        else:
            # Each worker gathers its batch's inputs too; up to ``workers`` batches wait
            # queued, so that a worker never waits for this thread while it writes the
            # oldest batch's results.
            with ThreadPoolExecutor(workers, thread_name_prefix="rnon-batch") as pool:
                pending: deque[tuple[list[Window], Future[np.ndarray]]] = deque()
                try:
                    for batch in todo:
                        self.progress.check()
                        pending.append((batch, pool.submit(compute, batch)))
                        if len(pending) > 2 * workers:  # every worker busy, as many queued
                            done, future = pending.popleft()
                            finish(done, future.result())
                    while pending:
                        done, future = pending.popleft()
                        finish(done, future.result())
                finally:
                    for _, future in pending:  # cancelled or failed: start nothing more
                        future.cancel()
        if blender is not None:
            first_write()
            blender.flush()

    def run_whole(
        self, tiles: list[tuple[Window, Window]], refine: Callable[[np.ndarray], np.ndarray]
    ) -> None:
        """The paper's stage 2: ``refine`` over the whole (repaired) plane, not composited.

        Args:
            tiles: ``(read window with halo, write window)`` pairs covering the plane.
            refine: ``[h,w,C]`` float32 in [0, 1] to the same.
        """
        results = []
        for rd, wr in tiles:  # read everything before writing: tiles overlap through halos
            self.progress.check()
            y = refine(self.imap.to_unit(self.dst[rd.slices]))
            oy, ox = wr.y0 - rd.y0, wr.x0 - rd.x0
            values = y[oy : oy + wr.shape[0], ox : ox + wr.shape[1]]
            results.append((wr, self.imap.from_unit(values)))
            self.progress.step()
        for wr, values in results:
            self.dst[wr.slices] = values


class Blender:
    """Streams the Gaussian-weighted blend of the blended windows, row by row.

    Windows arrive in raster order; rows above the newest window's top are final, are
    written out and dropped, so the buffer holds about one tile row of the plane.
    """

    def __init__(self, x0: int, x1: int, channels: int, write: Callable[..., None]) -> None:
        self.x0, self.x1, self.c = x0, x1, channels
        self.write = write
        self.y0 = -1
        self.acc = np.zeros((0, x1 - x0, channels), np.float32)
        self.wsum = np.zeros((0, x1 - x0), np.float32)

    def add(self, win: Window, result: np.ndarray) -> None:
        """Accumulate one window's ``h×w×C`` result."""
        if self.y0 < 0:
            self.y0 = win.y0
        if win.y0 > self.y0:
            self.flush(win.y0)
        need = win.y1 - self.y0 - self.acc.shape[0]
        if need > 0:
            self.acc = np.concatenate([self.acc, np.zeros((need, *self.acc.shape[1:]), np.float32)])
            self.wsum = np.concatenate(
                [self.wsum, np.zeros((need, self.wsum.shape[1]), np.float32)]
            )
        wts = gaussian_weights(win.shape)
        ys = slice(win.y0 - self.y0, win.y1 - self.y0)
        xs = slice(win.x0 - self.x0, win.x1 - self.x0)
        self.acc[ys, xs] += result * wts[..., None]
        self.wsum[ys, xs] += wts

    def flush(self, until: int | None = None) -> None:
        """Write out the rows above ``until`` (all rows if None)."""
        rows = self.acc.shape[0] if until is None else until - self.y0
        if rows <= 0:
            return
        region = Window(self.y0, self.y0 + rows, self.x0, self.x1, (), blend=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = self.acc[:rows] / self.wsum[:rows, :, None]
        self.write(region, values)
        self.acc, self.wsum = self.acc[rows:], self.wsum[rows:]
        self.y0 += rows


def batches(
    windows: list[Window],
    size: int,
    budget: int = 0,
    box_of: Callable[[Window], tuple[int, int, int, int] | None] | None = None,
    spread: float = BOX_SPREAD,
) -> Iterator[list[Window]]:
    """Consecutive runs of windows of equal shape and kind.

    A run is at most ``size`` windows long, or longer for small (packed or blended) windows:
    as many as fit in ``budget`` pixels (a 512² tile with the default budget stays alone).
    With ``box_of`` (a window's holes' box in it, or None), a run of packed windows also
    ends where its holes' common box, times its windows, would grow beyond ``spread``
    times the sum of their own boxes: the networks compute their last layers in the
    batch's common box.
    """
    batch: list[Window] = []
    limit = size
    common: tuple[int, int, int, int] | None = None
    own = 0
    for win in windows:
        box = box_of(win) if box_of is not None and win.packed else None
        joined = None if box is None or common is None else _union(common, box)
        if batch and (
            len(batch) >= limit
            or win.shape != batch[0].shape
            or win.packed != batch[0].packed
            or (
                joined is not None
                and (len(batch) + 1) * _area(joined) > spread * (own + _area(box))
            )
        ):
            yield batch
            batch, common, own, joined = [], None, 0, None
        if not batch:
            h, w = win.shape
            limit = max(size, budget // (h * w)) if win.packed or win.blend else size
        batch.append(win)
        if box is not None:
            common = box if joined is None else joined
            own += _area(box)
    if batch:
        yield batch


def _union(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])


def _area(box: tuple[int, int, int, int], ring: int = 3) -> int:
    """The box's area with a ring of ``ring`` px (what the last layers read around it)."""
    return (box[1] - box[0] + 2 * ring) * (box[3] - box[2] + 2 * ring)
