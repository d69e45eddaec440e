"""``rnon-batch --context-planes K [--stack-axis A]``: repair planes from their neighbours.

The hole pixels of a plane that one of the ``K`` planes on either side along the stack
axis knows are filled from them (:func:`rnon_engine.inference.stack_context.prefill`: the
learned stack model for ``--model auto`` and ``stack``, else the ``neighbours`` fill), the
rest by the model, plane by plane as without the option. Each
block reads ``K`` more planes on each side along the stack axis (its window overlaps its
neighbours' by ``K`` planes) and writes its own planes only: the fill of a plane uses the
planes within ``K`` of it alone, so the result does not depend on the blocks (the same as
one whole-stack call), and resume works as for any block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from rnon_engine.batch.io import ImageInfo, block_in_order
from rnon_engine.batch.plan import Block, Plan
from rnon_engine.errors import InputError
from rnon_engine.inference.stack_context import prefill, stack_filler

__all__ = ["accept_full_planes", "extend_windows", "inpaint_context", "resolve_stack_axis"]

#: Axis letters taken as the stack axis when ``--stack-axis`` is not given, in this order.
DEFAULT_STACK_AXES = "ZT"


def resolve_stack_axis(image: ImageInfo, stack_axis: str | None, k: int) -> int:
    """INPUT's stack axis for ``--context-planes k``.

    Args:
        image: INPUT's description.
        stack_axis: An axis letter (``"Z"``, ``"T"``...) or an index of INPUT; None takes
            the Z axis, else the T axis, else the only leading axis that is not channels.
        k: ``--context-planes`` (>= 1).

    Raises:
        InputError: No such axis, the channel or a spatial axis, or ``k`` larger than the
            stack allows.
    """
    axes = image.axes
    lead = [d for d in range(len(image.shape)) if d not in (image.y, image.x, image.color_axis)]
    if stack_axis is None:
        found = [axes.index(a) for a in DEFAULT_STACK_AXES if a in axes]
        if not found:  # one leading axis that is not channels: that one
            found = [d for d in lead if axes[d] != "C"][:2]
            found = found if len(found) == 1 else []
        if not found:
            raise InputError(
                f"--context-planes needs a Z or T axis, but INPUT's axes are {axes} (shape "
                f"{image.shape}): name the stack axis with --stack-axis (a letter or index)"
            )
        sa = found[0]
    elif stack_axis.lstrip("-").isdigit():
        sa = int(stack_axis)
        if not -len(axes) <= sa < len(axes):
            raise InputError(f"--stack-axis {stack_axis} is out of range for axes {axes}")
        sa %= len(axes)
    else:
        letter = stack_axis.upper()
        if len(letter) != 1 or letter not in axes:
            raise InputError(f"--stack-axis {stack_axis!r} is not one of INPUT's axes {axes}")
        sa = axes.index(letter)
    if axes[sa] == "C" or sa == image.color_axis:
        raise InputError(
            f"--stack-axis {stack_axis} is the channel axis ({axes}); neighbouring planes lie "
            "along Z or T"
        )
    if sa not in lead:
        raise InputError(
            f"--stack-axis {stack_axis} is a spatial axis ({axes[sa]} of {axes}); give a Z or "
            "T axis"
        )
    n = image.shape[sa]
    if k > n - 1:
        raise InputError(
            f"--context-planes {k} but INPUT has {n} plane(s) along {axes[sa]}: use at most "
            f"{max(0, n - 1)}"
        )
    return sa


def extend_windows(plan: Plan, image: ImageInfo, sa: int, k: int) -> Plan:
    """The plan with every block's window widened by ``k`` planes each side along ``sa``."""
    n = image.shape[sa]

    def widen(b: Block) -> Block:
        window = list(b.window)
        a, z = b.region[sa]
        window[sa] = (max(0, a - k), min(n, z + k))
        return replace(b, window=tuple(window))

    return replace(plan, blocks=tuple(widen(b) for b in plan.blocks))


def accept_full_planes(plan: Plan, image: ImageInfo, sa: int, k: int) -> Plan:
    """Drop from the blocks' ``full_planes`` those a plane within ``k`` can fill.

    A plane the mask covers entirely is filled wholly from any plane within ``k`` that has
    a known pixel, so only planes whose neighbours within ``k`` are all covered remain
    (they are refused by :func:`~rnon_engine.batch.plan.check_plan`).
    """
    lead = [d for d in range(len(image.shape)) if d not in (image.y, image.x, image.color_axis)]
    pos = lead.index(sa)
    n = image.shape[sa]
    full = {p for b in plan.blocks for p in b.full_planes}

    def lost(p: tuple[int, ...]) -> bool:
        for d in range(1, k + 1):
            for z in (p[pos] - d, p[pos] + d):
                if 0 <= z < n and (*p[:pos], z, *p[pos + 1 :]) not in full:
                    return False
        return True

    blocks = tuple(
        replace(b, full_planes=tuple(p for p in b.full_planes if lost(p))) for b in plan.blocks
    )
    return replace(plan, blocks=blocks)


def inpaint_context(
    inp: Any,
    image: ImageInfo,
    data: np.ndarray,
    m: np.ndarray,
    stages: str,
    inner: tuple[slice, ...],
    sa: int,
    k: int,
    cancel: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, int]:
    """Repair the planes of ``data[inner]`` from their neighbours, then the rest per plane.

    Args:
        inp: The inpainter (its 2-D pass).
        image: INPUT's description.
        data: INPUT's values in the block's window (``k`` planes more each side along
            ``sa`` where INPUT has them).
        m: The window's boolean mask (INPUT's dimensions, broadcastable).
        stages: ``"both"`` or ``"repair"``.
        inner: The block's region inside the window.
        sa: The stack axis.
        k: Context planes.
        cancel: Checked between planes.

    Returns:
        ``data[inner]`` repaired, and the number of planes with holes repaired.
    """
    nd = data.ndim
    y, x, c = image.y, image.x, image.color_axis
    others = [d for d in range(nd) if d not in (y, x, c, sa)]
    order = [*others, sa, y, x] + ([c] if c is not None else [])
    dt, mt, it, out = block_in_order(data, m, inner, order, c)
    no = len(others)
    zs = it[no]
    channel_axis = -1 if c is not None else None
    n = 0
    for idx in np.ndindex(*dt.shape[:no]):
        sub, sub_m = dt[idx], mt[idx]
        core = sub_m[zs][:, it[no + 1], it[no + 2]]
        if not core.any():
            continue
        planes = range(*zs.indices(sub.shape[0]))
        fill = prefill(
            sub,
            sub_m,
            k,
            stack_axis=0,
            channel_axis=channel_axis,
            cancel=cancel,
            planes=planes,
            warn=False,
            filler=stack_filler(inp),
        )
        out[idx] = fill.image
        for z in planes:
            if not sub_m[z][it[no + 1], it[no + 2]].any():
                continue
            n += 1
            if fill.residual[z].any():
                out[idx + (z,)] = inp.inpaint(
                    fill.image[z],
                    fill.residual[z],
                    stages=stages,
                    channel_axis=channel_axis,
                    cancel=cancel,
                    context_planes=0,
                )
    return np.transpose(out[it], np.argsort(order)), n
