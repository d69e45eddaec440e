"""The ``"auto"`` method: every group of holes goes to the method that repairs it best.

``Inpainter.from_pretrained("auto")`` returns an :class:`AutoInpainter`. For every 2-D plane
of the mask it sorts the hole groups into damage kinds and routes each kind to a method
by :data:`rnon_engine.inference.routing.RULES` (measured by ``benchmarks/auto_rules.py``).
The fills are composited into one result:

1. The cheapest method (Telea) fills every hole: this call checks the image, the mask and
   the arguments (same errors as any other method, before any work) and gives every
   later method a plausible context where holes of other kinds lie next to its own.
2. Every other method that has holes routed to it repairs exactly those holes on the
   result so far, classical methods first, the network last. ``"biharmonic"`` groups are
   solved all at once (:mod:`rnon_engine.inference.sparse_biharmonic`, equal to
   scikit-image's fill but without its per-region cost).

Each step keeps the pixels outside its own holes bit-identical, so the result is
bit-identical to the input outside the mask, in the input's dtype. Isolated dead pixels
never reach the network: scattered damage costs what the classical methods cost.

With no network weights available, ``"auto"`` uses
:data:`~rnon_engine.inference.routing.FALLBACK_RULES` (classical methods only) and says so
once with a :class:`RuntimeWarning`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from rnon_engine.errors import Cancelled, InputError, WeightsError
from rnon_engine.inference.background import in_thread
from rnon_engine.inference.inpainter import Inpainter
from rnon_engine.inference.inputs import as_array, check_out, into
from rnon_engine.inference.routing import (
    FALLBACK_RULES,
    KINDS,
    LABEL_NAMES,
    MERGE_GAP,
    NETWORK,
    PREFILL,
    RULES,
    auto_provenance,
    method_labels,
    method_pixels,
)
from rnon_engine.inference.sparse_biharmonic import fill_biharmonic
from rnon_engine.inference.stack_context import inpaint_with_context

__all__ = ["SPARSE_KINDS", "AutoInpainter", "build_auto", "check_rules"]


_warned_fallback = False


def _warn_fallback(reason: str) -> None:
    global _warned_fallback
    if not _warned_fallback:
        warnings.warn(
            f"'auto': no network weights available ({reason}); using the classical rules "
            f"only ({', '.join(f'{k}: {v}' for k, v in FALLBACK_RULES.items())})",
            RuntimeWarning,
            stacklevel=3,
        )
        _warned_fallback = True


#: Kinds whose groups are thin enough for one sparse biharmonic solve.
SPARSE_KINDS = ("pixel", "speck", "thin")


def check_rules(rules: dict[str, str]) -> None:
    """Refuse rules that miss a kind, name an unknown method or overload the sparse solve.

    Raises:
        InputError: What is wrong with ``rules``.
    """
    methods = sorted(set(LABEL_NAMES.values()))
    if set(rules) != set(KINDS):
        raise InputError(f"rules must map every kind {list(KINDS)} to a method, got {rules!r}")
    bad = {k: m for k, m in rules.items() if m not in methods}
    if bad:
        raise InputError(f"unknown method(s) in rules {bad}; choose from {methods}")
    wide = [k for k, m in rules.items() if m == "biharmonic" and k not in SPARSE_KINDS]
    if wide:
        raise InputError(
            f"'auto' fills biharmonic groups in one sparse solve, meant for thin damage "
            f"{list(SPARSE_KINDS)}; route {wide} to another method"
        )


class AutoInpainter(Inpainter):
    """Routes each damage kind to its best method and composites the fills.

    Behaves like an :class:`~rnon_engine.inference.Inpainter` (same ``inpaint`` contract,
    ``estimate_error``, ``provenance``); build it with ``Inpainter.from_pretrained("auto")``
    or :func:`build_auto`.

    Attributes:
        rules: kind -> method actually used (the fallback rules without weights).
        members: method name -> the inpainter that runs it.
        last_counts: Hole pixels filled by each method in the last ``inpaint`` call.
    """

    def __init__(  # noqa: D107  (the members are built by build_auto)
        self,
        members: dict[str, Inpainter],
        rules: dict[str, str],
        *,
        name: str = "auto",
    ) -> None:
        # Not Inpainter.__init__: an AutoInpainter holds inpainters rather than networks.
        check_rules(rules)
        missing = sorted(set(rules.values()) - set(members) - {"biharmonic"})
        if missing or PREFILL not in members:
            raise InputError(f"'auto' needs inpainters for {missing or [PREFILL]}")
        self.members = dict(members)
        self.rules = dict(rules)
        self.name = name
        self.method = "auto"
        net = self.members.get(NETWORK)
        self.device = net.device if net is not None else None
        # The settings of the inpainter that does the heavy work, for callers that show them.
        main = net if net is not None else self.members[PREFILL]
        self.tile_size = main.tile_size
        for attr in ("margin", "overlap", "batch_size", "window_multiple", "stage2_region"):
            setattr(self, attr, getattr(main, attr, None))
        self.repair = net.repair if net is not None else None
        self.optimize = net.optimize if net is not None else None
        self.last_counts: dict[str, int] = {}
        self.provenance = auto_provenance(
            self.rules, {m: inp.provenance for m, inp in self.members.items()}, name
        )

    def __repr__(self) -> str:
        return f"AutoInpainter(rules={self.rules!r}, device={self.device})"

    def prepare(self) -> None:
        """Start opening the network member's ONNX Runtime sessions (:meth:`Inpainter.prepare`)."""
        if NETWORK in self.members:
            self.members[NETWORK].prepare()

    def method_labels(self, mask: np.ndarray) -> np.ndarray:
        """Which method fills which pixel of ``mask`` (see :func:`routing.method_labels`).

        Returns:
            uint8 array of the mask's shape: 0 known, then the codes of :data:`LABEL_NAMES`
            (1 telea, 2 ns, 3 biharmonic, 4 the network).
        """
        return method_labels(mask, self.rules)

    def run_provenance(self) -> dict[str, Any]:
        """:attr:`provenance` plus ``pixels_per_method`` of the last ``inpaint`` call."""
        return {**self.provenance, "pixels_per_method": dict(self.last_counts)}

    def inpaint(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        *,
        stages: str = "both",
        channel_axis: int | str | None = "auto",
        progress: Callable[[int, int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        context_planes: int | None = None,
        stack_axis: int = 0,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Repair ``image`` where ``mask`` is nonzero, each hole group by its best method.

        Same arguments, result and errors as :meth:`Inpainter.inpaint`; ``stages``
        (``"both"`` or ``"repair"``) applies to the network's holes. Afterwards
        :attr:`last_counts` holds the hole pixels filled by each method (those filled
        from neighbouring planes, ``context_planes > 0``, are not counted).
        """
        if stages not in ("both", "repair"):
            raise InputError(
                f"'auto' runs stages 'both' or 'repair' (got {stages!r}); for stage 2 alone "
                "use the RNON model ('default')"
            )
        if out is not None:
            image = as_array(image, "image")
            check_out(out, image)
        if context_planes:  # stacks: the neighbouring planes first (stack_context.py)
            result = inpaint_with_context(
                self, image, mask, context_planes, stack_axis=stack_axis, stages=stages,
                channel_axis=channel_axis, progress=progress, cancel=cancel,
            )
            return result if out is None else into(out, result)
        mask = np.asarray(mask)
        holes = counts = None
        # Nothing is prefilled when the methods are the network and the biharmonic fill
        # (step 1 of the module docstring): the biharmonic fill reads no hole's value (a
        # stencil of 2 px never reaches another group: groups are 2 known pixels apart at
        # least, MERGE_GAP, and its known-range clip ignores hole values), and the network
        # runs last, on an image whose other holes are filled by then, and never reads its
        # own holes' values. Telea and Navier-Stokes read further, so with them every hole
        # is prefilled, and so is a float image's (the prefill's input check accepts NaN
        # only inside its mask); the prefill with an empty mask is the check and the copy.
        integer = np.dtype(getattr(image, "dtype", "O")).kind in "iub"  # without reading it
        no_prefill = integer and MERGE_GAP >= 1
        checked = None
        if mask.ndim >= 2:
            # The network's sessions open while the holes are grouped and filled.
            self.prepare()
            if no_prefill and set(self.rules.values()) <= {NETWORK, "biharmonic"}:
                # The check and the copy, in a thread while the holes are grouped.
                checked = in_thread(
                    self.members[PREFILL].inpaint, image, np.zeros(mask.shape, bool),
                    channel_axis=channel_axis, out=out, name="rnon-auto",
                )
            holes, counts = _method_holes(mask, self.rules)
            only = next(iter(counts)) if len(counts) == 1 else None
            if only is not None and only in self.members:
                if checked is not None:
                    checked()  # a bad input is refused here, before the member's work
                # One method for every hole (all strokes, all spots...): no Telea prefill;
                # that member's own call checks the input, and the result is the same.
                kwargs: dict[str, Any] = {"stages": stages} if only == NETWORK else {}
                result = self.members[only].inpaint(
                    image, mask, channel_axis=channel_axis, progress=progress, cancel=cancel,
                    out=out, **kwargs,
                )
                self.last_counts = counts
                return result
        steps = [PREFILL, *[m for m in LABEL_NAMES.values() if m != PREFILL]]
        nsteps = len(steps)

        def step_progress(i: int) -> Callable[[int, int], None] | None:
            if progress is None:
                return None
            return lambda done, total: progress(
                i * 1000 + (1000 * done) // max(total, 1), nsteps * 1000
            )

        # Step 1 checks everything (image, mask, channel axis) before any work.
        if checked is not None:
            out = checked()
        else:
            first = mask
            if no_prefill and counts and set(counts) - {NETWORK} <= {"biharmonic"}:
                first = np.zeros(mask.shape, bool)
            out = self.members[PREFILL].inpaint(
                image, first, channel_axis=channel_axis, progress=step_progress(0), cancel=cancel,
                out=out,
            )
        if holes is None or counts is None:
            holes, counts = _method_holes(mask, self.rules)
        self.last_counts = counts
        for i, method in enumerate(steps[1:], start=1):
            if not counts.get(method):
                continue
            if method == "biharmonic":
                if cancel is not None and cancel():
                    raise Cancelled("inpainting cancelled before the biharmonic fill")
                # In place: out is the prefill's result (the caller's out, or a new array).
                out = fill_biharmonic(out, holes[method], channel_axis, in_place=True)
                continue
            kwargs = {"stages": stages} if method == NETWORK else {}
            # In place, on the prefill's result.
            out = self.members[method].inpaint(
                out,
                holes[method],
                channel_axis=channel_axis,
                progress=step_progress(i),
                cancel=cancel,
                out=out,
                **kwargs,
            )
        if progress is not None:
            progress(nsteps * 1000, nsteps * 1000)
        return out

    __call__ = inpaint


def _method_holes(
    mask: np.ndarray, rules: dict[str, str]
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Each method's holes and its number of hole pixels (methods with none left out).

    The holes are bool arrays of the mask's shape, set from the hole pixels alone: no
    label image is made (:func:`method_labels` is the same routing, for display).
    """
    hole = mask if mask.dtype == bool else mask != 0
    per_code = np.zeros(max(LABEL_NAMES) + 1, dtype=np.int64)
    holes: dict[str, np.ndarray] = {}
    for idx in np.ndindex(*hole.shape[:-2]):
        if not hole[idx].any():
            continue
        flat, codes = method_pixels(hole[idx], rules)
        per_code += np.bincount(codes, minlength=per_code.size)
        for code in np.unique(codes):
            name = LABEL_NAMES[int(code)]
            if name not in holes:
                holes[name] = np.zeros(hole.shape, dtype=bool)
            holes[name][idx].ravel()[flat[codes == code]] = True
    counts = {name: int(per_code[code]) for code, name in LABEL_NAMES.items() if per_code[code]}
    return holes, counts


def build_auto(
    network: str | os.PathLike = "default",
    device: str | torch.device = "auto",
    *,
    stage2: str | os.PathLike | None = None,
    tile_size: int = 512,
    threads: int | None = None,
    rules: dict[str, str] | None = None,
    **kwargs: Any,
) -> AutoInpainter:
    """Build the ``"auto"`` inpainter (what ``Inpainter.from_pretrained("auto")`` calls).

    Args:
        network: The network to route to (``"default"`` or a repair-generator path).
        device: Device of the network.
        stage2: Optimize-generator path (see :meth:`Inpainter.from_pretrained`).
        tile_size: Largest window side of every member.
        threads: Torch CPU threads, if given.
        rules: kind -> method, default :data:`~rnon_engine.inference.routing.RULES`.
        **kwargs: Passed to the network's :class:`Inpainter` (``batch_size``...).

    Raises:
        InputError: Unknown device or settings.
    """
    rules = dict(RULES if rules is None else rules)
    check_rules(rules)
    methods = set(rules.values()) | {PREFILL}
    members: dict[str, Inpainter] = {}
    if NETWORK in methods:
        try:
            members[NETWORK] = Inpainter.from_pretrained(
                network, device, stage2=stage2, tile_size=tile_size, threads=threads, **kwargs
            )
        except WeightsError as exc:
            _warn_fallback(str(exc))
            rules = dict(FALLBACK_RULES)
            methods = set(rules.values()) | {PREFILL}
    for method in sorted(methods - {NETWORK, "biharmonic"}):
        members[method] = Inpainter.from_pretrained(method, tile_size=tile_size, threads=threads)
    auto = AutoInpainter(members, rules)
    _use_stack_model(auto)
    return auto


def _use_stack_model(auto: AutoInpainter) -> None:
    """With ``context_planes > 0``, ``auto`` fills from neighbours with the stack model."""
    from rnon_engine.inference.stack_model import stack_provenance

    try:
        auto.provenance.update(stack_provenance())
    except WeightsError as exc:  # a broken installation: the classical neighbours fill
        _warn_fallback(str(exc))
        return
    auto.stack_weights = "default"
