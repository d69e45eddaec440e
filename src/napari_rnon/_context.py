"""'Use neighbouring planes' in the Inpaint widget: a plane's holes filled from its neighbours.

A thin shell over :func:`rnon_engine.inference.stack_context.prefill` (with the learned
stack model when the method has one: ``auto``; otherwise the classical ``neighbours`` fill) for
:func:`napari_rnon._planes.run_planes`, which reads and repairs one plane at a time: the
image it reads (:class:`NeighbourPlanes`) gives each plane with the hole pixels that one of
the ``K`` planes on either side along the first leading axis knows already filled, and the
repair function (:func:`residual_inpaint`) repairs only the hole pixels left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from napari_rnon._planes import Geometry, MaskPlanes, PlaneIndex
from rnon_engine.inference.stack_context import PlaneFill, prefill

__all__ = ["NeighbourPlanes", "residual_inpaint"]


class NeighbourPlanes:
    """The layer's planes, each with the holes its neighbours know filled (read by index).

    Attributes:
        residual: The hole pixels of the plane read last that no neighbour knows.
    """

    def __init__(
        self,
        image: Any,
        geometry: Geometry,
        mask: MaskPlanes,
        k: int,
        filler: PlaneFill | None = None,
    ) -> None:
        """Wrap layer data ``image`` of ``geometry`` with its ``mask``; ``k`` planes each side.

        ``filler``: the per-plane fill (the inpainter's
        :func:`~rnon_engine.inference.stack_context.stack_filler`; None: classical).
        """
        self.image, self.geometry, self.mask, self.k = image, geometry, mask, int(k)
        self.filler = filler
        self.dtype = np.dtype(image.dtype)
        self.residual: np.ndarray | None = None

    def __getitem__(self, idx: PlaneIndex) -> np.ndarray:
        """Plane ``idx`` with its neighbour-known hole pixels filled; sets :attr:`residual`."""
        n = self.geometry.leading_shape[0]
        z, rest = idx[0], tuple(idx[1:])
        zs = list(range(max(0, z - self.k), min(n, z + self.k + 1)))
        stack = np.stack([np.asarray(self.image[(zz, *rest)]) for zz in zs])
        holes = np.stack([self.mask.plane((zz, *rest)) for zz in zs])
        at = zs.index(z)
        fill = prefill(
            stack,
            holes,
            min(self.k, len(zs) - 1),
            stack_axis=0,
            channel_axis=-1 if self.geometry.rgb else None,
            planes=[at],
            warn=False,
            filler=self.filler,
        )
        self.residual = fill.residual[at]
        return fill.image[at]


def residual_inpaint(
    source: NeighbourPlanes, inpaint: Callable[..., np.ndarray], estimate: bool
) -> Callable[..., np.ndarray]:
    """The repair function for :func:`run_planes`: ``inpaint`` on the residual holes only.

    A plane that its neighbours filled completely is returned as it is; ``inpaint``'s
    recorder (``records``, when it has one) gets a record of 0 hole pixels for it, so its
    records stay one per plane.
    """

    def run(plane: np.ndarray, mask: np.ndarray, progress: Any, cancel: Any) -> np.ndarray:
        residual = source.residual if source.residual is not None else mask
        if residual.any():
            return inpaint(plane, residual, progress=progress, cancel=cancel)
        records = getattr(inpaint, "records", None)
        if isinstance(records, list):
            records.append({"holes": 0, **({"rmse": 0.0} if estimate else {})})
        return plane

    return run
