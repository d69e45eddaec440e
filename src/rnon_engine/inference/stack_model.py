"""The learned stack model at inference: a plane's holes repaired from its aligned neighbours.

``Inpainter.from_pretrained("stack")`` (and ``"auto"`` with ``context_planes > 0``) fills
the hole pixels of a plane that an aligned neighbour within ``K`` planes knows with the
stack network (:class:`rnon_engine.nn.networks.stack.StackRepairNet`, packaged weights
``default_stack.safetensors``); the hole pixels no neighbour knows (the same pixels damaged
in every plane) go to the inpainter's 2-D method, as with the classical ``neighbours``
fill. :class:`StackModel` is the per-plane fill that
:func:`rnon_engine.inference.stack_context.prefill` calls in place of its classical
:func:`~rnon_engine.inference.stack_context.fill_plane`, so inputs, checks, blocks of
``rnon-batch`` and napari's planes go through the same code.

One plane (:meth:`StackModel.fill_plane`):

1. Values are mapped to [0, 1] by the minimum and maximum of the known pixels of the plane
   and its neighbours (all channels): the same for a plane whatever else is in the call.
2. Every neighbour is aligned to the plane on their known pixels
   (:mod:`rnon_engine.inference.stack_align`; the warps are estimated on the mean over
   channels and applied to every channel).
3. Per channel: the network inputs (:func:`rnon_engine.inference.stack_inputs.stack_inputs`),
   the network, the output clipped to [0, 1] and mapped back; only hole pixels that an
   aligned neighbour knows are returned as filled.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rnon_engine.inference.stack_inputs import align_neighbours, stack_inputs

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "STACK_FILE",
    "StackModel",
    "load_stack_model",
    "packaged_stack_path",
    "stack_provenance",
]

#: File name of the packaged stack weights in ``rnon_engine/pretrained``.
STACK_FILE = "default_stack.safetensors"
#: Planes larger than this (px) are run through the network in overlapping tiles.
_TILE = 1024
_TILE_MARGIN = 64


def packaged_stack_path() -> Path:
    """Path of the packaged stack weights.

    Raises:
        WeightsError: The file is missing (a broken installation).
    """
    from rnon_engine.errors import WeightsError
    from rnon_engine.pretrained import DIRECTORY

    path = DIRECTORY / STACK_FILE
    if not path.is_file():
        raise WeightsError(
            f"the packaged stack weights {path} are missing; reinstall napari-rnon or give "
            "the path of stack weights written by python -m training.stack_run"
        )
    return path


def stack_provenance(path: str | os.PathLike | None = None) -> dict[str, str]:
    """Provenance entries of stack weights (None: the packaged file), torch-free.

    Raises:
        WeightsError: The file is missing, foreign, or not stack weights.
    """
    from rnon_engine.errors import WeightsError
    from rnon_engine.nn.weights import file_sha256, read_metadata

    p = packaged_stack_path() if path is None else Path(path)
    meta = read_metadata(p)
    if meta["model_name"] != "rnon-repair-stack":
        raise WeightsError(
            f"{p} holds a {meta['model_name']!r} model, not stack weights (rnon-repair-stack)"
        )
    return {
        "stack_model": "rnon-repair-stack",
        "stack_weights": str(p) if path is not None else f"packaged:{STACK_FILE}",
        "stack_weights_sha256": file_sha256(p),
    }


class StackModel:
    """The stack network and the per-plane fill around it.

    Args:
        net: A :class:`~rnon_engine.nn.networks.stack.StackRepairNet` in eval mode.
        path: The weights file it came from (for provenance), if any.
    """

    def __init__(self, net: nn.Module, path: Path | None = None) -> None:
        from rnon_engine.errors import WeightsError

        if getattr(net, "model_name", None) != "rnon-repair-stack":
            raise WeightsError(
                f"{path or 'the model'} is a {getattr(net, 'model_name', '?')!r} network, not "
                "stack weights (rnon-repair-stack): give the stack model's .safetensors"
            )
        self.net = net
        self.path = path
        self.slots = int(net.config.slots)
        self.sha256 = getattr(net, "weights_sha256", None)

    def _run(self, x: np.ndarray) -> np.ndarray:
        import torch

        h, w = x.shape[-2:]
        out = np.empty((h, w), np.float32)
        step = _TILE - 2 * _TILE_MARGIN
        with torch.no_grad():
            for y0 in range(0, h, step if h > _TILE else h):
                for x0 in range(0, w, step if w > _TILE else w):
                    ya, xa = max(0, y0 - _TILE_MARGIN), max(0, x0 - _TILE_MARGIN)
                    yb = min(h, y0 + (step if h > _TILE else h) + _TILE_MARGIN)
                    xb = min(w, x0 + (step if w > _TILE else w) + _TILE_MARGIN)
                    t = torch.from_numpy(np.ascontiguousarray(x[None, :, ya:yb, xa:xb]))
                    pred = self.net(t)[0, 0].numpy()
                    ye = min(h, y0 + (step if h > _TILE else h))
                    xe = min(w, x0 + (step if w > _TILE else w))
                    out[y0:ye, x0:xe] = pred[y0 - ya : ye - ya, x0 - xa : xe - xa]
        return out

    def fill_plane(
        self,
        plane: np.ndarray,
        hole: np.ndarray,
        neighbours: list[tuple[int, np.ndarray, np.ndarray]],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fill the hole pixels of one plane that an aligned neighbour knows.

        Same contract as :func:`rnon_engine.inference.stack_context.fill_plane`.

        Args:
            plane: ``h×w×C`` values (any real dtype); hole values are ignored.
            hole: ``h×w`` bool, True = pixel to fill.
            neighbours: ``(signed offset, values h×w×C, known h×w bool)`` per neighbour.

        Returns:
            ``(values h×w×C float64, filled h×w bool)``.
        """
        known = ~hole
        # unknown pixels may hold anything (NaN): zero them before any arithmetic
        plane = np.where(hole[..., None], 0, plane)
        neighbours = [(d, np.where(m[..., None], v, 0), m) for d, v, m in neighbours]
        vals = [plane[known]] + [v[m] for _, v, m in neighbours]
        stacked = np.concatenate([np.asarray(v, np.float64).ravel() for v in vals])
        lo, hi = float(stacked.min()), float(stacked.max())
        scale = hi - lo if hi > lo else 1.0

        def unit(a: np.ndarray) -> np.ndarray:
            return np.clip((a.astype(np.float64) - lo) / scale, 0, 1).astype(np.float32)

        p = unit(plane)
        neigh = [(d, unit(v), m) for d, v, m in neighbours]
        guide_p = p.mean(axis=-1)
        guides = [v.mean(axis=-1) for _, v, _ in neigh]
        aligned, _ = align_neighbours(
            guide_p, known, [(d, v, m) for d, v, m in neigh], guide=guides
        )
        nchan = plane.shape[-1]
        out = np.zeros(plane.shape, np.float64)
        filled = np.zeros(hole.shape, bool)
        for c in range(nchan):
            chan = [(d, v[..., c], m) for d, v, m in aligned]
            inputs = stack_inputs(p[..., c], hole, chan, self.slots)
            if not inputs.has.any():
                continue
            pred = np.clip(self._run(inputs.x), 0, 1)
            out[..., c] = pred.astype(np.float64) * scale + lo
            filled |= inputs.has
        return out, filled & hole


@functools.lru_cache(maxsize=4)
def _load(path: str, sha: str) -> StackModel:  # noqa: ARG001 - sha: a changed file reloads
    from rnon_engine.nn.weights import load_model

    return StackModel(load_model(path, "cpu"), Path(path))


def load_stack_model(path: str | os.PathLike | None = None) -> StackModel:
    """Load stack weights (None: the packaged ones), cached per file and content.

    Raises:
        WeightsError: Missing, foreign or corrupt file, or weights of another network.
    """
    from rnon_engine.nn.weights import file_sha256

    p = packaged_stack_path() if path is None else Path(path)
    if not p.is_file():
        from rnon_engine.errors import WeightsError

        raise WeightsError(f"stack weights file not found: {p}")
    return _load(str(p.resolve()), file_sha256(p))
