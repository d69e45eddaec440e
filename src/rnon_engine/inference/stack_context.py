"""Repair a plane of a stack from its neighbours (Z or T context): the ``neighbours`` fill.

Time-lapses with a transient defect and volumes with a damaged section hold the missing
data in the planes just before and after. With ``context_planes=K``,
:meth:`rnon_engine.Inpainter.inpaint` first fills every hole pixel that is known in at
least one of the ``K`` planes on either side along ``stack_axis`` (:func:`prefill`), then
runs its own 2-D method on the hole pixels that are left (no known neighbour within ``K``
planes). ``Inpainter.from_pretrained("neighbours")`` is this fill with the biharmonic
method as 2-D fallback and ``K = 2`` by default. Until a learned stack model exists, the
RNON networks and ``auto`` use the same neighbour fill when ``K > 0``.

How a plane ``z`` is filled (:func:`fill_plane`, in float64 on the image's own values):

1. **Prediction.** At each pixel, the nearest plane before and the nearest plane after
   (within ``z ± K``) where that pixel is known, weighted by ``1 / d``: the linear
   interpolation between them (a linear drift is followed exactly), or the one side's
   value; when the planes agree it is their value.
2. **Seam correction.** The prediction may differ from the plane by an intensity offset
   (drift, flicker, bleaching). The offset ``o = plane - prediction`` is known on the
   plane's known pixels next to the filled region; inside, ``o`` is the harmonic function
   (``Δo = 0``, 4-neighbour Laplacian, one sparse solve per connected region with
   :func:`scipy.sparse.linalg.spsolve`) with those border values, so the fill meets its
   border without a seam (Poisson image editing with the neighbours' gradients). Regions
   without such a border (a whole lost plane) keep the prediction as it is.
3. Integers are rounded and clipped to their dtype's range; pixels outside the mask are
   never written.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rnon_engine.errors import Cancelled, InputError

__all__ = [
    "DEFAULT_CONTEXT_PLANES",
    "NO_NEIGHBOUR_WARNING",
    "StackFill",
    "fill_plane",
    "harmonic_offset",
    "predict_plane",
    "prefill",
    "resolve_axes",
    "stack_filler",
]

#: ``K`` of ``Inpainter.from_pretrained("neighbours")`` when ``context_planes`` is not given.
DEFAULT_CONTEXT_PLANES = 2
#: Start of the warning given (once per call) when some hole pixels have no known value in
#: any plane within ``K``: they are filled by the 2-D method.
NO_NEIGHBOUR_WARNING = "no neighbouring plane knows"


#: A per-plane fill: ``(plane h×w×C, hole h×w, neighbours) -> (values, filled)`` as
#: :func:`fill_plane`.
PlaneFill = Callable[
    [np.ndarray, np.ndarray, list[tuple[int, np.ndarray, np.ndarray]]],
    tuple[np.ndarray, np.ndarray],
]


@dataclass
class StackFill:
    """Result of :func:`prefill`.

    Attributes:
        image: A new array, the input with the neighbour-filled hole pixels written.
        residual: Bool array of shape ``leading + (H, W)``: the hole pixels left for the
            2-D method (no known neighbour within ``K`` planes).
        channel_axis: The resolved channel axis (None: no channel axis), for the 2-D pass.
        filled: Number of hole pixels (per channel group) filled from neighbours.
    """

    image: np.ndarray
    residual: np.ndarray
    channel_axis: int | None
    filled: int


def resolve_axes(
    shape: tuple[int, ...], channel_axis: int | str | None, stack_axis: int
) -> tuple[int | None, int]:
    """Resolve the channel and stack axes of an image of ``shape`` for a stack repair.

    ``channel_axis="auto"``: a 3-D image is taken as a ``Z×Y×X`` stack (no channel axis;
    a 2-D RGB picture has no neighbouring planes), 4-D and up must say.

    Returns:
        ``(channel_axis or None, stack_axis)``, both as non-negative axis indices.

    Raises:
        InputError: A 2-D image, a stack axis out of range, or one that is the channel
            axis or a spatial (Y, X) axis.
    """
    nd = len(shape)
    if nd < 3:
        raise InputError(
            f"context_planes needs a stack (a leading Z or T axis), but the image has shape "
            f"{shape}: use context_planes=0 for a single image"
        )
    if isinstance(channel_axis, str):
        if channel_axis != "auto":
            raise InputError(f"channel_axis must be 'auto', an int or None, got {channel_axis!r}")
        if nd > 3:
            raise InputError(
                f"image has {nd} dimensions {shape}: say which axis holds the channels with "
                "channel_axis=<int> (or channel_axis=None if there is none)"
            )
        ch = None
    elif channel_axis is None:
        ch = None
    else:
        if isinstance(channel_axis, bool) or not isinstance(channel_axis, int | np.integer):
            raise InputError(f"channel_axis must be 'auto', an int or None, got {channel_axis!r}")
        if not -nd <= channel_axis < nd:
            raise InputError(f"channel_axis {channel_axis} is out of range for shape {shape}")
        ch = int(channel_axis) % nd
    if isinstance(stack_axis, bool) or not isinstance(stack_axis, int | np.integer):
        raise InputError(f"stack_axis must be an int, got {stack_axis!r}")
    if not -nd <= stack_axis < nd:
        raise InputError(f"stack_axis {stack_axis} is out of range for shape {shape}")
    sa = int(stack_axis) % nd
    if sa == ch:
        raise InputError(
            f"stack_axis {stack_axis} is the channel axis of shape {shape}: the neighbouring "
            "planes must lie along a Z or T axis; pass that axis as stack_axis (or fix "
            "channel_axis)"
        )
    spatial = [a for a in range(nd) if a != ch][-2:]
    if sa in spatial:
        leading = [a for a in range(nd) if a != ch and a not in spatial]
        hint = f"one of the leading axes {leading}" if leading else "a leading axis"
        raise InputError(
            f"stack_axis {stack_axis} is a spatial (Y or X) axis of shape {shape}; the stack "
            f"axis must be {hint}"
            + (" (a 3-D image with channels? it has no stack axis)" if not leading else "")
        )
    return ch, sa


def predict_plane(
    planes: list[tuple[int, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """Distance-weighted prediction of a plane from its nearest known neighbours.

    At each pixel, the nearest plane on each side where the pixel is known is taken, with
    weight ``1 / d``: between a known plane before (at ``d1``) and one after (at ``d2``)
    this is the linear interpolation ``(d2·a + d1·b) / (d1 + d2)``; with one side only, that
    side's value.

    Args:
        planes: ``(signed offset, values h×w×C, known h×w bool)`` for each neighbouring
            plane (negative offsets: before the plane, positive: after).

    Returns:
        ``(prediction h×w×C float64, has h×w bool)``: the prediction, and where at least
        one neighbour was known (elsewhere the prediction is 0).
    """
    if not planes:
        raise ValueError("predict_plane needs at least one neighbouring plane")
    shape = planes[0][2].shape
    num = np.zeros(planes[0][1].shape, np.float64)
    den = np.zeros(shape, np.float64)
    taken = {-1: np.zeros(shape, bool), 1: np.zeros(shape, bool)}
    for d, values, known in sorted(planes, key=lambda p: abs(p[0])):
        side = taken[1 if d > 0 else -1]
        use = known & ~side
        side |= use
        w = use / float(abs(d))
        num += np.where(use[..., None], values, 0.0) * w[..., None]
        den += w
    has = den > 0
    pred = num / np.where(has, den, 1.0)[..., None]
    return pred, has


def harmonic_offset(region: np.ndarray, border_value: np.ndarray, border: np.ndarray) -> np.ndarray:
    """Harmonic interpolation of an offset into ``region`` from its border values.

    Solves ``Δo = 0`` (4-neighbour Laplacian) on the ``region`` pixels with ``o`` fixed to
    ``border_value`` on the ``border`` pixels; other pixels next to the region are left
    out of the stencil (a zero-flux edge). Regions (4-connected) that touch no border pixel
    get ``o = 0``.

    Args:
        region: ``h×w`` bool, the pixels to solve for.
        border_value: ``h×w×C`` float64, the offset on the border pixels.
        border: ``h×w`` bool, pixels with a known offset (disjoint from ``region``).

    Returns:
        ``h×w×C`` float64 offset, 0 outside ``region``.
    """
    from scipy import ndimage, sparse
    from scipy.sparse.linalg import spsolve

    h, w = region.shape
    nchan = border_value.shape[-1]
    out = np.zeros((h, w, nchan), np.float64)
    labels, n = ndimage.label(region)
    if n == 0:
        return out
    touch = ndimage.binary_dilation(border) & region
    ok = np.zeros(n + 1, bool)
    ok[np.unique(labels[touch])] = True
    ok[0] = False
    solve = ok[labels]
    if not solve.any():
        return out
    ys, xs = np.nonzero(solve)
    idx = np.full((h, w), -1, np.int64)
    idx[ys, xs] = np.arange(ys.size)
    diag = np.zeros(ys.size, np.float64)
    rhs = np.zeros((ys.size, nchan), np.float64)
    rows, cols = [], []
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        qy, qx = ys + dy, xs + dx
        inside = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
        qy, qx = np.clip(qy, 0, h - 1), np.clip(qx, 0, w - 1)
        in_region = inside & solve[qy, qx]
        on_border = inside & border[qy, qx]
        diag += in_region | on_border
        rows.append(np.flatnonzero(in_region))
        cols.append(idx[qy[in_region], qx[in_region]])
        rhs[on_border] += border_value[qy[on_border], qx[on_border]]
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    mat = sparse.csc_matrix(
        (
            np.concatenate([diag, -np.ones(r.size)]),
            (np.concatenate([np.arange(ys.size), r]), np.concatenate([np.arange(ys.size), c])),
        ),
        shape=(ys.size, ys.size),
    )
    sol = spsolve(mat, rhs)
    out[ys, xs] = np.asarray(sol).reshape(ys.size, nchan)
    return out


def fill_plane(
    plane: np.ndarray,
    hole: np.ndarray,
    neighbours: list[tuple[int, np.ndarray, np.ndarray]],
    *,
    seam: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Fill the hole pixels of one plane that its neighbours know.

    Args:
        plane: ``h×w×C`` values (any real dtype); hole values are ignored.
        hole: ``h×w`` bool, True = pixel to fill.
        neighbours: ``(signed offset, values h×w×C, known h×w bool)`` per neighbouring
            plane (see :func:`predict_plane`).
        seam: Apply the harmonic seam correction (see the module docstring).

    Returns:
        ``(values h×w×C float64, filled h×w bool)``: the fill (valid where ``filled``) and
        which hole pixels were filled.
    """
    pred, has = predict_plane(neighbours)
    filled = hole & has
    if seam and filled.any():
        border = ~hole & has
        diff = np.where(border[..., None], plane.astype(np.float64) - pred, 0.0)
        pred = pred + harmonic_offset(filled, diff, border)
    return pred, filled


def prefill(
    image: np.ndarray,
    mask: np.ndarray,
    context_planes: int,
    *,
    stack_axis: int = 0,
    channel_axis: int | str | None = "auto",
    seam: bool = True,
    cancel: Callable[[], bool] | None = None,
    planes: Sequence[int] | None = None,
    warn: bool = True,
    filler: PlaneFill | None = None,
) -> StackFill:
    """Fill the hole pixels that a plane within ``context_planes`` along ``stack_axis`` knows.

    Args:
        image: A stack: ``Z×Y×X``, or with more leading axes and/or a channel axis.
        mask: Nonzero = repair; the spatial shape (every plane) or the image shape
            without the channel axis (one mask per plane).
        context_planes: ``K >= 1``: planes on each side that may be used.
        stack_axis: The axis of ``image`` along which planes are neighbours.
        channel_axis: As in :meth:`Inpainter.inpaint`, except that ``"auto"`` takes a
            3-D image as a ``Z×Y×X`` stack.
        seam: Apply the harmonic seam correction.
        cancel: Checked before every plane; True raises
            :class:`~rnon_engine.errors.Cancelled`.
        planes: Indices along the stack axis to fill (default: all); the others are
            context only (their holes stay in ``residual``, they are not checked).
        warn: Give the warning about hole pixels no neighbour knows (``rnon-batch``
            leaves it out: it would come once per block).
        filler: The per-plane fill, with the contract of :func:`fill_plane` (default:
            :func:`fill_plane`, the classical ``neighbours`` fill; the learned stack model
            passes :meth:`rnon_engine.inference.stack_model.StackModel.fill_plane`).

    Returns:
        A :class:`StackFill`. Warns (once) when some hole pixels have no known value
        within ``K`` planes.

    Raises:
        InputError: ``K`` out of range (below 1, or more than the stack's other planes),
            the stack axis is the channel axis or a spatial one, a 2-D image, a mask of
            the wrong shape, NaN outside the mask, or a plane left with no known pixel.
    """
    if isinstance(context_planes, bool) or not isinstance(context_planes, int | np.integer):
        raise InputError(f"context_planes must be an integer >= 0, got {context_planes!r}")
    if context_planes < 1:
        raise InputError(f"prefill needs context_planes >= 1, got {context_planes}")
    if image.dtype.kind not in "buif" or mask.dtype.kind not in "buif":
        raise InputError(f"image and mask must be numeric, got {image.dtype} and {mask.dtype}")
    ch, sa = resolve_axes(image.shape, channel_axis, stack_axis)
    nz = image.shape[sa]
    if context_planes > nz - 1:
        raise InputError(
            f"context_planes={context_planes} but the stack has {nz} plane(s) along axis "
            f"{sa} (shape {image.shape}): use at most {nz - 1}"
            + ("" if nz > 1 else ", i.e. repair it as a single image (context_planes=0)")
        )
    # view: leading..., Y, X, C with the stack axis first.
    view = image[..., None] if ch is None else np.moveaxis(image, ch, -1)
    sa_v = sa if ch is None or sa < ch else sa - 1
    view = np.moveaxis(view, sa_v, 0)
    full = view.shape[:-1]
    spatial = full[-2:]
    lead = tuple(image.shape[a] for a in range(image.ndim) if a != ch)
    if mask.shape == tuple(spatial):
        holes = np.broadcast_to(mask != 0, full)
    elif mask.shape == lead:
        holes = np.moveaxis(mask != 0, sa_v, 0)
    else:
        raise InputError(
            f"mask shape {mask.shape} does not match image shape {image.shape}: expected "
            f"{tuple(spatial)} (Y, X) or {lead} (one per plane)"
        )
    if image.dtype.kind == "f":
        bad = ~np.isfinite(view).all(axis=-1) & ~holes
        if bad.any():
            raise InputError(
                f"the image has {int(bad.sum())} NaN or infinite pixel(s) outside the mask; "
                "add them to the mask to repair them, or replace them"
            )
    out = image.copy()
    oview = out[..., None] if ch is None else np.moveaxis(out, ch, -1)
    oview = np.moveaxis(oview, sa_v, 0)
    residual = np.array(holes, dtype=bool)
    info = np.finfo(np.float64) if image.dtype.kind == "f" else np.iinfo(image.dtype)
    lo, hi = (None, None) if image.dtype.kind == "f" else (info.min, info.max)
    filled_total = 0
    todo = range(nz) if planes is None else sorted(set(planes))
    for rest in np.ndindex(*full[1:-2]):
        for z in todo:
            key = (z, *rest)
            hole = holes[key]
            if not hole.any():
                continue
            if cancel is not None and cancel():
                raise Cancelled("inpainting cancelled while filling from neighbouring planes")
            neigh = []
            for d in range(1, context_planes + 1):
                for zz in (z - d, z + d):
                    if 0 <= zz < nz:
                        known = ~holes[(zz, *rest)]
                        if known.any():
                            neigh.append((zz - z, view[(zz, *rest)], known))
            if not neigh:
                continue
            if filler is None:
                values, filled = fill_plane(view[key], hole, neigh, seam=seam)
            else:
                values, filled = filler(view[key], hole, neigh)
            if not filled.any():
                continue
            vals = values[filled]
            if lo is not None:
                vals = np.clip(np.rint(vals), lo, hi)
            target = oview[key]
            target[filled] = vals.astype(image.dtype)
            residual[key] &= ~filled
            filled_total += int(filled.sum())
    for key in np.ndindex(*full[:-2]):
        if key[0] in todo and residual[key].all():
            raise InputError(
                f"plane {key} along the stack is masked entirely and no plane within "
                f"context_planes={context_planes} knows any of its pixels: raise "
                "context_planes, or leave some valid pixels"
            )
    left = int(residual[list(todo)].sum())
    if left and warn:
        total = int(holes[list(todo)].sum())
        warnings.warn(
            f"{NO_NEIGHBOUR_WARNING} {left} of the {total} hole pixel(s) within "
            f"{context_planes} plane(s) (the same pixels are masked there, or lie outside "
            "them once they are aligned): they are "
            "repaired from their own plane (2-D method)",
            UserWarning,
            stacklevel=4,
        )
    residual = np.moveaxis(residual, 0, sa_v)
    return StackFill(out, residual, ch, filled_total)


def stack_filler(inpainter: object) -> PlaneFill | None:
    """The per-plane fill for ``inpainter``'s ``context_planes``: learned or classical.

    An inpainter whose ``stack_weights`` attribute is set (``"default"``: the packaged
    stack model, or a path; ``from_pretrained("stack")`` and ``"auto"``) fills from its
    neighbours with the learned stack model
    (:meth:`rnon_engine.inference.stack_model.StackModel.fill_plane`); the others with the
    classical ``neighbours`` fill (None: :func:`fill_plane`).

    Raises:
        WeightsError: The stack weights are missing or not stack weights.
    """
    weights = getattr(inpainter, "stack_weights", None)
    if weights is None:
        return None
    from rnon_engine.inference.stack_model import load_stack_model

    return load_stack_model(None if weights == "default" else weights).fill_plane


def inpaint_with_context(
    inpainter: object,
    image: np.ndarray,
    mask: np.ndarray,
    context_planes: int,
    *,
    stack_axis: int = 0,
    stages: str = "both",
    channel_axis: int | str | None = "auto",
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> np.ndarray:
    """:meth:`Inpainter.inpaint` with ``context_planes > 0``: neighbours first, then 2-D.

    The hole pixels that a plane within ``context_planes`` knows are filled by
    :func:`prefill` (with the learned stack model when ``inpainter`` has one, see
    :func:`stack_filler`); the others by ``inpainter.inpaint`` on the stack, with the
    neighbour-filled pixels as known context.
    """
    from rnon_engine.inference.inputs import as_array
    from rnon_engine.inference.intensity import check_dtype

    if stages == "optimize":
        raise InputError(
            "stages='optimize' refines holes that are already filled; it takes no "
            "context_planes (use context_planes=0)"
        )
    image, mask = as_array(image, "image"), as_array(mask, "mask")
    check_dtype(image.dtype)
    result = prefill(
        image,
        mask,
        context_planes,
        stack_axis=stack_axis,
        channel_axis=channel_axis,
        cancel=cancel,
        filler=stack_filler(inpainter),
    )
    if not result.residual.any():
        if progress is not None:
            progress(1, 1)
        return result.image
    return inpainter.inpaint(  # type: ignore[attr-defined]
        result.image,
        result.residual,
        stages=stages,
        channel_axis=result.channel_axis,
        context_planes=0,
        progress=progress,
        cancel=cancel,
    )
