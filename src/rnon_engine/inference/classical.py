"""Classical (non-learned) inpainting: OpenCV Telea and Navier-Stokes, scikit-image biharmonic.

They go through the same :class:`rnon_engine.Inpainter` code path as the network (same
dtypes, leading axes, intensity mapping, mask-aware windows and the guarantee that pixels
outside the mask keep their exact values). Their windows are small: each hole (or a few
close holes) gets its own window with :data:`CONTEXT` px around it, since the methods are
local; holes larger than a tile use the blended tile grid like the network. Use
``Inpainter.from_pretrained("telea")``.

How each window is filled (:func:`fill`), on the plane's values mapped to float32 [0, 1]
(see :mod:`rnon_engine.inference.intensity`):

- ``"telea"`` / ``"ns"``: :func:`cv2.inpaint` with ``INPAINT_TELEA`` / ``INPAINT_NS`` and
  radius 3. OpenCV accepts 8-bit 1- or 3-channel images and 16-bit or 32-bit-float
  *1-channel* images (checked with OpenCV 5.0). Its float32 Telea is broken there (fills
  oscillate between values far outside the data range), so every channel is inpainted on
  its own as **uint16** (the [0, 1] values scaled to 0..65535, a step of 1.5e-5 of the
  plane's range): no 8-bit quantisation of 16-bit or float data. For RGB this is what
  OpenCV does inside anyway (its weights depend on the mask, not on the channel).
- ``"biharmonic"``: :func:`skimage.restoration.inpaint_biharmonic` with ``channel_axis=-1``
  and ``split_into_regions=True`` (one small linear system per hole).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

__all__ = [
    "CLASSICAL_METHODS",
    "CONTEXT",
    "WINDOW_COST",
    "fill",
    "guide_fill",
    "spare_core",
    "start_guide_fill",
]

#: The classical methods' names, as ``Inpainter.from_pretrained`` and ``rnon-batch --model``
#: take them (the one list: front ends import it from here).
CLASSICAL_METHODS = ("telea", "ns", "biharmonic")
RADIUS = 3
#: Valid context kept around each hole (px). The three methods are local: a Telea / NS
#: fill reads known pixels within ``RADIUS`` (plus 1 for the image gradient) of the hole,
#: a biharmonic fill those within 2 px, so a window of the hole plus this margin gives the
#: same fill as the whole plane (the biharmonic fill is clipped to the known pixels'
#: range in its window, which can differ where a fill overshoots).
CONTEXT = 8
#: Fixed cost of one window in px² (Python and call overhead, measured as about the cost
#: of a 64×64 window): holes share a window only when that is cheaper, so the cost of a
#: plane follows its hole area, not its size (see :func:`rnon_engine.inference.tiling.plan_tiles`).
WINDOW_COST = 64 * 64


def fill(method: str, image: np.ndarray, hole: np.ndarray, radius: int = RADIUS) -> np.ndarray:
    """Fill the holes of one window.

    Args:
        method: ``"telea"``, ``"ns"`` or ``"biharmonic"``.
        image: ``h×w×C`` float32 in [0, 1]; values in holes are ignored.
        hole: ``h×w`` bool, True = pixel to fill.
        radius: Neighbourhood radius of the OpenCV methods.

    Returns:
        ``h×w×C`` float32; only the hole pixels differ from ``image``.
    """
    image = np.where(hole[..., None], np.float32(0), image).astype(np.float32, copy=False)
    if method in ("telea", "ns"):
        import cv2

        flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
        m8 = hole.astype(np.uint8)
        scaled = np.rint(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16)
        out = np.empty_like(image)
        for c in range(image.shape[-1]):
            filled = cv2.inpaint(np.ascontiguousarray(scaled[..., c]), m8, radius, flag)
            out[..., c] = filled.astype(np.float32) / np.float32(65535.0)
        return out
    if method == "biharmonic":
        from skimage.restoration import inpaint_biharmonic

        out = inpaint_biharmonic(image, hole, split_into_regions=True, channel_axis=-1)
        return out.astype(np.float32, copy=False)
    raise ValueError(f"unknown classical method {method!r}; known: {CLASSICAL_METHODS}")


def guide_fill(method: str, images: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """The classical fill a guided stage 2 reads, for a batch of windows.

    Training (:func:`rnon_engine.train.trainer.guide_fill`) and inference (the inpainter,
    ONNX Runtime) both call this, so the network sees the same guide in both. The
    biharmonic guide of each window is what
    :func:`rnon_engine.inference.sparse_biharmonic.fill_biharmonic` gives it (scikit-image's
    equations and stencil, mirrored at the window's edge, clipped to the window's known
    range), for the whole batch in one sparse solve
    (:func:`~rnon_engine.inference.sparse_biharmonic.fill_windows`).

    Args:
        method: A classical method name (``OptimizeConfig.guide``).
        images: ``[N,C,h,w]`` float32 in [0, 1] (hole values are ignored).
        holes: ``[N,h,w]`` bool, True = hole.

    Returns:
        ``[N,C,h,w]`` float32: the windows with their holes filled by ``method``; windows
        without holes, or without a known pixel to fill from, are returned as they are.
    """
    if method == "biharmonic":
        # One sparse solve for the holes of every window of the batch, each window clipped
        # to its known range: the fill "auto" uses (scikit-image's equations, without its
        # per-region Python work), window by window in one block-diagonal system.
        from rnon_engine.inference.sparse_biharmonic import fill_windows

        return fill_windows(np.asarray(images, dtype=np.float32), holes)
    out = np.array(images, dtype=np.float32, copy=True)
    for i, hole in enumerate(holes):
        if not hole.any() or hole.all():
            continue
        window = out[i].transpose(1, 2, 0)
        out[i] = fill(method, window, hole).transpose(2, 0, 1)
    return out


def start_guide_fill(
    method: str, images: np.ndarray, holes: np.ndarray, *, background: bool
) -> Callable[[], np.ndarray]:
    """Start :func:`guide_fill`; returns a function that waits for its result.

    The guide reads only the known pixels, so it can be computed while stage 1 fills the
    holes. With ``background`` it runs in a thread (the sparse factorisation releases
    the GIL: on a machine with a core to spare its time is hidden behind the network's);
    otherwise it runs now. Either way the result is the same array.

    Args:
        method: As :func:`guide_fill`.
        images: As :func:`guide_fill` (not modified; the hole values are not read).
        holes: As :func:`guide_fill`.
        background: Compute in a thread.
    """
    if not background:
        result = guide_fill(method, images, holes)
        return lambda: result
    from rnon_engine.inference.background import in_thread

    return in_thread(guide_fill, method, images, holes, name="rnon-guide")


def spare_core(threads: int | None) -> bool:
    """Whether a background thread (the stage-2 guide) may use another core.

    True when the process may run on more than one CPU core and ``threads`` (the
    inpainter's requested CPU threads) is unset or above 1: ``threads=1`` keeps the whole
    call on one core (dask workers, timings of one core).
    """
    if threads is not None and threads <= 1:
        return False
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return cores > 1
