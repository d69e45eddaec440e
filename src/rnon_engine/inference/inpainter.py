"""Inference: repair any image of any size where a mask says so.

This is the one code path shared by napari, ``rnon-batch``, the benchmarks and the tests::

    from rnon_engine import Inpainter
    inp = Inpainter.from_pretrained("default")          # or a weights path, "telea", ...
    repaired = inp.inpaint(image, mask)                 # mask nonzero = repair

What :meth:`Inpainter.inpaint` guarantees:

- It returns a new array of the input's shape and dtype; every pixel where ``mask == 0``
  is bit-identical to the input, and the inputs are never modified.
- Bad input is refused with :class:`~rnon_engine.errors.InputError` before any work; an
  empty mask returns a copy at once without running anything.
- Intensities are mapped to [0, 1] once per plane from its valid pixels
  (:mod:`rnon_engine.inference.intensity`) and back with rounding and clipping.
- Only windows that hold hole pixels are computed (:mod:`rnon_engine.inference.tiling`), in batches;
  ``progress(done, total)`` is called after every window and ``cancel()`` is checked
  before every batch (it raises :class:`~rnon_engine.errors.Cancelled`).
- Small holes (up to ``tile_size - 2*margin`` across) get windows of their own size plus
  ``margin`` px of context (:data:`NET_CONTEXT` for the networks), rounded up to
  :data:`NET_WINDOW_MULTIPLE` and computed at that size rather than padded to the U-Net's
  ``2**depth`` (``RepairGenerator.forward(pad_to=...)``): the cost of scattered small holes
  follows their area. Equal-sized small windows are batched up to ``tile_size²`` pixels.
  ``window_multiple=2**depth`` gives the padded windows back.
- Stage 1 (repair) output is composited into the window (``M·I + (1-M)·out``); stage 2
  (optimize) runs on a band around the holes, as wide as its receptive field
  (``OptimizeConfig.halo``; one box per group of nearby holes), and is composited
  again, so the whole-image colour shift that the paper reports cannot happen.
  ``stage2_region="image"`` restores the paper's behaviour: stage 2 over the whole image,
  not composited (pixels outside the mask then change too: use it to reproduce the paper,
  not for data).
- Grayscale planes (and each channel of a multichannel image other than RGB/RGBA) are fed
  to the 3-channel network replicated to 3 channels, and the mean of the 3 output channels
  is taken back.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rnon_engine.device import resolve_device
from rnon_engine.errors import Cancelled, InputError
from rnon_engine.inference.classical import CLASSICAL_METHODS
from rnon_engine.inference.classical import WINDOW_COST as classical_window_cost
from rnon_engine.inference.classical import fill as classical_fill
from rnon_engine.inference.inputs import as_array
from rnon_engine.inference.intensity import IntensityMap, check_dtype, intensity_map
from rnon_engine.inference.memory import release_memory
from rnon_engine.inference.provenance import build_provenance, describe
from rnon_engine.inference.settings import (
    NET_WINDOW_COST,
    NET_WINDOW_MULTIPLE,
    check_settings,
    default_margin,
)
from rnon_engine.inference.tiling import TilePlan, Window, gaussian_weights, plan_tiles
from rnon_engine.inference.weights_source import list_methods, resolve_weights

if TYPE_CHECKING:  # torch is imported where it runs: ONNX models run without it
    import torch
    from torch import nn

__all__ = ["Inpainter", "describe", "list_methods"]

_STAGES = ("both", "repair", "optimize")


@dataclass
class _Unit:
    """One plane (or one channel group of a plane) to repair."""

    index: tuple[int, ...]
    channels: slice | None
    hole_key: tuple[int, ...]


class _Blender:
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
        rows = self.acc.shape[0] if until is None else until - self.y0
        if rows <= 0:
            return
        region = Window(self.y0, self.y0 + rows, self.x0, self.x1, (), blend=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = self.acc[:rows] / self.wsum[:rows, :, None]
        self.write(region, values)
        self.acc, self.wsum = self.acc[rows:], self.wsum[rows:]
        self.y0 += rows


class Inpainter:
    """Repairs images with RNON (repair + optimize generators) or a classical method.

    Attributes:
        name: What it was made from (``"default"``, a weights path, ``"telea"``...).
        method: ``"rnon"`` or the classical method's name.
        device: The torch device of the networks (None for classical methods).
        provenance: Method, weights paths and SHA-256, package version and stages: what
            outputs should record.
    """

    def __init__(
        self,
        repair_model: nn.Module | None = None,
        optimize_model: nn.Module | None = None,
        *,
        method: str | None = None,
        device: str | torch.device = "auto",
        tile_size: int = 512,
        margin: int | None = None,
        overlap: int | None = None,
        batch_size: int | None = None,
        window_multiple: int | None = None,
        stage2_region: str = "band",
        threads: int | None = None,
        name: str | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        """Build an inpainter from model objects (tests, the trainer) or a classical method.

        Args:
            repair_model: A ``"rnon-repair"`` generator (``forward(image, mask) -> image``).
            optimize_model: Optional ``"rnon-optimize"`` generator for stage 2.
            method: A classical method (``"telea"``, ``"ns"``, ``"biharmonic"``) instead
                of networks.
            device: ``"auto"`` (CUDA, MPS, else CPU) or a torch device; the models are
                moved there.
            tile_size: Largest window side in pixels.
            margin: Valid context around small (packed) holes (default
                :data:`NET_CONTEXT` for the networks, :data:`classical.CONTEXT`
                for the classical methods). Each small hole gets its own window unless
                sharing one is cheaper (``window_cost`` in
                :func:`rnon_engine.inference.tiling.plan_tiles`).
            overlap: Overlap of blended windows over large holes (default ``tile_size // 4``).
            batch_size: Windows per forward call (default 1 on the CPU, 8 on a GPU); small
                windows of one size are batched further, up to ``tile_size²`` pixels.
            window_multiple: Networks: small-hole windows are rounded up to a multiple of
                this and computed at that size (default :data:`NET_WINDOW_MULTIPLE` when
                the repair model's ``forward`` takes ``pad_to``, else its padding
                multiple). The U-Net's ``2**depth`` (256 for the default model) gives
                windows padded as in training, at several times the cost for small holes.
            stage2_region: ``"band"`` (stage 2 around the holes, composited) or
                ``"image"`` (the paper: stage 2 over the whole image, not composited).
            threads: If given, ``torch.set_num_threads(threads)`` (a process-wide setting).
            name: Name recorded in :attr:`provenance`.
            provenance: Extra provenance entries (weights paths, hashes).

        Raises:
            InputError: Unknown method, bad tile settings or stage-2 region.
        """
        check_settings(tile_size, stage2_region)
        if margin is None:
            margin = default_margin(repair_model is not None, tile_size)
        overlap = tile_size // 4 if overlap is None else overlap
        if not 0 <= 2 * margin < tile_size or not 0 <= overlap < tile_size:
            raise InputError(
                f"need 0 <= 2*margin < tile_size and 0 <= overlap < tile_size, got "
                f"margin={margin}, overlap={overlap}, tile_size={tile_size}"
            )
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise InputError(f"batch_size must be an integer >= 1 (or None), got {batch_size!r}")
        if threads is not None:
            if threads < 1:
                raise InputError(f"threads must be >= 1, got {threads}")
            if not _outside_torch(repair_model):
                import torch

                torch.set_num_threads(int(threads))
        self.tile_size, self.margin, self.overlap = tile_size, margin, overlap
        self.stage2_region = stage2_region
        if repair_model is None:
            if method not in CLASSICAL_METHODS:
                raise InputError(
                    f"unknown method {method!r}; give a repair model or one of {CLASSICAL_METHODS}"
                )
            self.method = method
            self.device = None
            self.repair = self.optimize = None
            self.batch_size = batch_size or 1
            self.window_cost: int | None = classical_window_cost
            self.window_multiple = 1
        elif _outside_torch(repair_model):
            # ONNX Runtime (inference/onnx_model.py): one object runs both stages on numpy
            # windows (its fill()), under the same planning, tiling and compositing.
            self.method, self.device = "rnon", None
            self.repair = repair_model
            self.optimize = repair_model if repair_model.has_optimize else None
            self.batch_size = batch_size or 1
            native = int(repair_model.multiple)
            takes_pad = True
        else:
            self.method = "rnon"
            self.device = resolve_device(device)
            self.repair = repair_model.to(self.device).eval()
            self.optimize = (
                optimize_model.to(self.device).eval() if optimize_model is not None else None
            )
            self.batch_size = batch_size or (1 if self.device.type == "cpu" else 8)
            native = int(getattr(repair_model, "multiple", 1))
            takes_pad = "pad_to" in inspect.signature(repair_model.forward).parameters
        if self.method == "rnon":
            if window_multiple is None:
                window_multiple = NET_WINDOW_MULTIPLE if takes_pad else native
            elif window_multiple < native and not takes_pad:
                raise InputError(
                    f"window_multiple={window_multiple} needs a repair model whose forward "
                    f"takes pad_to; this one pads to {native}: leave window_multiple unset"
                )
            if window_multiple < 1 or window_multiple & (window_multiple - 1):
                raise InputError(f"window_multiple must be a power of two, got {window_multiple}")
            self.window_multiple = int(window_multiple)
            # Padded windows cost the same whatever holes they hold: pack freely then.
            self.window_cost = NET_WINDOW_COST if self.window_multiple < native else None
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.name = name or self.method
        if self.method != "rnon":
            stages = [self.method]
        else:
            stages = ["repair", "optimize"] if self.optimize is not None else ["repair"]
        # Built by the same function as describe(): the two cannot drift.
        self.provenance: dict[str, Any] = build_provenance(
            self.method,
            self.name,
            stages,
            stage2_region=stage2_region,
            tile_size=tile_size,
            context=margin,
            window_multiple=self.window_multiple,
            extra=provenance,
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike = "default",
        device: str | torch.device = "auto",
        *,
        stage2: str | os.PathLike | None = None,
        tile_size: int = 512,
        threads: int | None = None,
        **kwargs: Any,
    ) -> Inpainter:
        """Load the packaged model, a trained model, or pick a classical method.

        Args:
            name_or_path: ``"auto"`` (each hole group to its best method, see
                :mod:`rnon_engine.inference.auto`), ``"default"`` (the packaged repair
                and optimize generators), ``"telea"``, ``"ns"``, ``"biharmonic"``, the
                path of a repair-generator ``.safetensors`` file written by the trainer, or
                an exported ``rnon_repair.onnx`` (run by ONNX Runtime on the CPU, without
                torch; its ``rnon_optimize.onnx`` beside it is stage 2; see
                ``docs/export.md``).
            device: ``"auto"`` or a torch device.
            stage2: Path of an optimize-generator file. If None: the file named by the
                repair file's ``"stage2_file"`` metadata entry (a plain file name next to it;
                a folder or an absolute path there is refused), else
                the trainer's ``optimize_generator.safetensors`` next to a
                ``repair_generator.safetensors`` when its ``repair_weights`` metadata names
                this repair file; otherwise only stage 1 runs.
            tile_size: Largest window side.
            threads: Torch CPU threads (process-wide), if given.
            **kwargs: Passed to :class:`Inpainter` (``margin``, ``batch_size``,
                ``stage2_region``...).

        Raises:
            InputError: Unknown method name or device.
            WeightsError: A weights file is missing, foreign, corrupt or of the wrong model.
        """
        from rnon_engine.nn.weights import load_model

        text = os.fspath(name_or_path)
        if text in CLASSICAL_METHODS:
            return cls(method=text, tile_size=tile_size, threads=threads, name=text, **kwargs)
        if text == "auto":  # routing and compositing live in inference/auto.py
            from rnon_engine.inference.auto import build_auto

            return build_auto(
                "default", device, stage2=stage2, tile_size=tile_size, threads=threads, **kwargs
            )
        if text.lower().endswith(".onnx"):  # ONNX Runtime on the CPU; torch is not imported
            from rnon_engine.inference.onnx_model import OnnxNetworks

            if str(device) not in ("auto", "cpu"):
                raise InputError(
                    f"{text} is an ONNX model: it runs on the CPU with ONNX Runtime, not on "
                    f"{device!r}; use device 'auto' or 'cpu', or the .safetensors weights"
                )
            src = resolve_weights(text, stage2)
            nets = OnnxNetworks(src.repair, src.optimize, threads=threads)
            return cls(
                nets, tile_size=tile_size, name=text, provenance=src.files(), **kwargs
            )
        dev = resolve_device(device)
        # The files and their checks come from the metadata alone, as in describe().
        src = resolve_weights(text, stage2)
        repair = load_model(src.repair, dev)
        optimize = load_model(src.optimize, dev) if src.optimize is not None else None
        return cls(
            repair,
            optimize,
            device=dev,
            tile_size=tile_size,
            threads=threads,
            name=text,
            provenance=src.files(),
            **kwargs,
        )

    def __repr__(self) -> str:
        return (
            f"Inpainter(name={self.name!r}, method={self.method!r}, device={self.device}, "
            f"tile_size={self.tile_size})"
        )

    # ------------------------------------------------------------------ inference
    def inpaint(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        *,
        stages: str = "both",
        channel_axis: int | str | None = "auto",
        progress: Callable[[int, int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """Repair ``image`` where ``mask`` is nonzero.

        Args:
            image: ``H×W`` (grayscale), ``H×W×3`` (RGB), ``H×W×4`` (RGBA: alpha copied),
                ``H×W×C`` (each channel as grayscale), with any leading axes (Z, T...)
                handled plane by plane; uint8, other integers or floats. A numpy array, or
                anything :func:`~rnon_engine.inference.inputs.as_array` takes (a CPU torch
                tensor without grad, a rectangular nested list).
            mask: Nonzero = repair. Its shape is the spatial shape ``H×W`` (used for every
                plane and channel) or the image shape without the channel axis (one mask
                per plane).
            stages: ``"both"`` (repair, then optimize when an optimize model is loaded),
                ``"repair"``, or ``"optimize"``: stage 2 alone on an image whose holes were
                already filled (e.g. by an earlier ``"repair"`` run; NaN or infinite values
                under the mask are refused); the mask still says which pixels may change.
                Classical methods ignore ``stages`` except ``"optimize"``, which they refuse.
            channel_axis: ``"auto"``: 2-D images have no channel axis, 3-D images are
                channels-last, 4-D and up must say. An int names the channel axis; None
                means there is none. The spatial axes are the last two other axes.
            progress: Called as ``progress(done, total)`` after every window.
            cancel: Called before every batch of windows; True raises
                :class:`~rnon_engine.errors.Cancelled`.

        Returns:
            A new array, same shape and dtype; pixels with ``mask == 0`` are unchanged.

        Raises:
            InputError: The image, mask or an argument is not acceptable.
            Cancelled: ``cancel()`` returned True.
        """
        if stages not in _STAGES:
            raise InputError(f"stages must be one of {_STAGES}, got {stages!r}")
        image, mask = as_array(image, "image"), as_array(mask, "mask")
        check_dtype(image.dtype)
        ch = _channel_axis(image, channel_axis)
        view = image if ch is None else np.moveaxis(image, ch, -1)
        nspatial_end = view.ndim - (0 if ch is None else 1)
        spatial = view.shape[nspatial_end - 2 : nspatial_end]
        leading = view.shape[: nspatial_end - 2]
        if min(spatial) < 1:
            raise InputError(f"image has an empty spatial axis: shape {image.shape}")
        per_plane = _check_mask(mask, spatial, leading, image.shape, ch)
        holes = mask != 0
        planes = list(np.ndindex(*leading)) if leading else [()]
        hole_keys = planes if per_plane else [()]
        for key in hole_keys:
            if holes[key].all():
                where = f" in plane {key}" if key else ""
                raise InputError(
                    f"the mask covers every pixel{where}: there is nothing to repair from; "
                    "leave some valid pixels"
                )
        if image.dtype.kind == "f":
            for idx in planes:
                bad = ~np.isfinite(view[idx])
                if ch is not None:
                    bad = bad.any(axis=-1)
                hole = holes[idx if per_plane else ()]
                where = f" of plane {idx}" if idx else ""
                if stages == "optimize" and (bad & hole).any():
                    raise InputError(
                        f"stages='optimize' refines holes that are already filled, but "
                        f"{int((bad & hole).sum())} pixel(s) under the mask{where} are NaN or "
                        "infinite: fill them first with stages='repair' (or run stages='both')"
                    )
                bad &= ~hole
                if bad.any():
                    raise InputError(
                        f"the image has {int(bad.sum())} NaN or infinite pixel(s){where} outside "
                        "the mask; add them to the mask to repair them, or replace them"
                    )
        if stages == "optimize" and (self.optimize is None or self.method != "rnon"):
            raise InputError(
                f"stages='optimize' runs stage 2 alone, but {self.name!r} has no optimization "
                "network: use an RNON model with stage-2 weights"
            )
        if not holes.any():
            return image.copy()
        optimize_only = stages == "optimize"
        use_stage2 = stages != "repair" and self.optimize is not None and self.method == "rnon"

        # Plan every plane first: the total for progress, and nothing fails half-way.
        nchan = 0 if ch is None else view.shape[-1]
        groups: list[slice | None]
        if ch is None:
            groups = [None]
        elif nchan in (3, 4):
            groups = [slice(0, 3)]
        else:
            groups = [slice(c, c + 1) for c in range(nchan)]
        plans = {
            key: plan_tiles(
                holes[key],
                self.tile_size,
                self.margin,
                self.overlap,
                multiple=self.window_multiple,
                window_cost=self.window_cost,
            )
            for key in hole_keys
        }
        units = [
            _Unit(idx, g, idx if per_plane else ())
            for idx in planes
            for g in groups
            if plans[idx if per_plane else ()].windows
        ]
        image_tiles = (
            self._stage2_image_tiles(spatial)
            if use_stage2 and self.stage2_region == "image"
            else []
        )
        total = sum(
            (0 if optimize_only and image_tiles else len(plans[u.hole_key].windows))
            + len(image_tiles)
            for u in units
        )

        out = image.copy()
        oview = out if ch is None else np.moveaxis(out, ch, -1)
        done = 0
        for unit in units:
            hole = holes[unit.hole_key]
            plane = view[unit.index]
            oplane = oview[unit.index]
            if unit.channels is None:
                src, dst = plane[..., None], oplane[..., None]
            else:
                src, dst = plane[..., unit.channels], oplane[..., unit.channels]
            imap = intensity_map(src, ~hole)
            band = use_stage2 and self.stage2_region == "band"
            if not (optimize_only and image_tiles):
                done = self._run_plan(
                    plans[unit.hole_key],
                    src,
                    dst,
                    hole,
                    imap,
                    band,
                    done,
                    total,
                    progress,
                    cancel,
                    repair=not optimize_only,
                )
            if image_tiles:
                done = self._run_stage2_image(image_tiles, dst, imap, done, total, progress, cancel)
        release_memory()  # keeps the RSS of long sessions flat (docs/benchmarks.md, "Soak")
        return out

    __call__ = inpaint

    def estimate_error(
        self, image: np.ndarray, mask: np.ndarray, *, seed: int = 0, **kwargs: Any
    ) -> float:
        """Expected RMSE of this inpainter's repair, in the image's units, without ground truth.

        Known pixels near the holes are hidden in the holes' shapes, repaired the same way
        and compared (:func:`rnon_engine.inference.estimate.estimate_error`, which takes
        ``repeats``, ``max_groups``, ``channel_axis`` and ``inpaint``'s arguments;
        :func:`~rnon_engine.inference.estimate.estimate_error_detail` gives it per
        damage kind). Costs ``repeats`` (default 2) repairs.

        Raises:
            InputError: An empty mask, or the image or mask is not acceptable.
        """
        from rnon_engine.inference.estimate import estimate_error

        return estimate_error(self, image, mask, seed=seed, **kwargs)

    # ------------------------------------------------------------------ internals
    def _run_plan(
        self,
        plan: TilePlan,
        src: np.ndarray,
        dst: np.ndarray,
        hole: np.ndarray,
        imap: IntensityMap,
        band: bool,
        done: int,
        total: int,
        progress: Callable[[int, int], None] | None,
        cancel: Callable[[], bool] | None,
        repair: bool = True,
    ) -> int:
        def write(win: Window, values: np.ndarray) -> None:
            owned = plan.owned(win, hole)
            if owned.any():
                dst[win.slices][owned] = imap.from_unit(values[owned])

        blend = [w for w in plan.windows if w.blend]
        blender = None
        if blend:
            x0, x1 = min(w.x0 for w in blend), max(w.x1 for w in blend)
            blender = _Blender(x0, x1, src.shape[-1], write)
        # Packed windows in any order: grouped by shape so that they batch; the blended
        # ones last, in raster order (the blender streams them row by row).
        alone = sorted((w for w in plan.windows if not w.blend), key=lambda w: (w.packed, w.shape))
        budget = self.tile_size**2
        for batch in _batches(alone + blend, self.batch_size, budget):
            if cancel is not None and cancel():
                raise Cancelled(f"inpainting cancelled after {done} of {total} windows")
            crops = np.stack([imap.to_unit(src[w.slices]) for w in batch])
            hmask = np.stack([hole[w.slices] for w in batch])
            if repair:
                crops[hmask] = 0.0
            pad_to = self.window_multiple if batch[0].packed else None
            results = self._fill(crops, hmask, band, repair=repair, pad_to=pad_to)
            for win, res in zip(batch, results, strict=True):
                if win.blend:
                    blender.add(win, res)
                else:
                    write(win, res)
                done += 1
                if progress is not None:
                    progress(done, total)
        if blender is not None:
            blender.flush()
        return done

    def _fill(
        self,
        crops: np.ndarray,
        holes: np.ndarray,
        band: bool,
        repair: bool = True,
        pad_to: int | None = None,
    ) -> np.ndarray:
        """Fill a batch ``[N,h,w,C]`` float32 in [0,1] with holes ``[N,h,w]``.

        ``repair=False`` skips stage 1 (the crops' holes are already filled); ``pad_to``
        is passed to the repair network when it is smaller than the network's own multiple.
        """
        if self.repair is None:
            return np.stack(
                [classical_fill(self.method, c, h) for c, h in zip(crops, holes, strict=True)]
            )
        if _outside_torch(self.repair):
            return self.repair.fill(crops, holes, band=band, repair=repair, pad_to=pad_to)
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(crops).to(self.device).permute(0, 3, 1, 2)
            gray = x.shape[1] == 1
            if gray:
                x = x.expand(-1, 3, -1, -1)
            valid = torch.from_numpy(~holes).to(self.device)[:, None].to(x.dtype)
            if not repair:
                comp = x
            elif pad_to is not None and pad_to < getattr(self.repair, "multiple", 1):
                comp = valid * x + (1 - valid) * self.repair(x, valid, pad_to=pad_to)
            else:
                comp = valid * x + (1 - valid) * self.repair(x, valid)
            if band:
                comp = self._stage2_band(comp, valid, holes)
            if gray:
                comp = comp.mean(dim=1, keepdim=True)
            return comp.permute(0, 2, 3, 1).float().cpu().numpy()

    def _stage2_band(
        self, comp: torch.Tensor, valid: torch.Tensor, holes: np.ndarray
    ) -> torch.Tensor:
        """Run stage 2 around the holes (within the window) and composite it.

        Stage 2 runs on boxes: each group of holes gets its box plus the halo (the
        network's receptive radius), and boxes that overlap are merged, so every hole
        pixel's receptive field lies inside exactly one box. Scattered small holes thus
        cost their boxes, not the window. When one box over the holes of the whole batch
        costs at most 1.5 times as much, stage 2 runs once on that box for the batch
        (fewer, larger calls for a device).
        """
        halo = int(getattr(getattr(self.optimize, "config", None), "halo", 0) or 0)
        n, h, w = holes.shape
        per_item = [_band_boxes(hole, halo) for hole in holes]
        rows = np.flatnonzero(holes.any(axis=(0, 2)))
        cols = np.flatnonzero(holes.any(axis=(0, 1)))
        ys = slice(max(0, rows[0] - halo), min(h, rows[-1] + 1 + halo))
        xs = slice(max(0, cols[0] - halo), min(w, cols[-1] + 1 + halo))
        boxes_area = sum((y.stop - y.start) * (x.stop - x.start) for b in per_item for y, x in b)
        out = comp.clone()
        if n * (ys.stop - ys.start) * (xs.stop - xs.start) <= 1.5 * boxes_area:
            sub, vsub = comp[..., ys, xs], valid[..., ys, xs]
            out[..., ys, xs] = vsub * sub + (1 - vsub) * self.optimize(sub)
            return out
        for i, boxes in enumerate(per_item):
            for ys, xs in boxes:
                sub = comp[i : i + 1, :, ys, xs]
                vsub = valid[i : i + 1, :, ys, xs]
                out[i : i + 1, :, ys, xs] = vsub * sub + (1 - vsub) * self.optimize(sub)
        return out

    def _stage2_image_tiles(self, spatial: tuple[int, int]) -> list[tuple[Window, Window]]:
        """(read window with halo, write window) pairs covering the whole plane."""
        halo = int(self.optimize.config.halo)
        h, w = spatial
        core = max(16, self.tile_size - 2 * halo)
        tiles = []
        for y in range(0, h, core):
            for x in range(0, w, core):
                wr = Window(y, min(h, y + core), x, min(w, x + core), ())
                rd = Window(
                    max(0, y - halo),
                    min(h, wr.y1 + halo),
                    max(0, x - halo),
                    min(w, wr.x1 + halo),
                    (),
                )
                tiles.append((rd, wr))
        return tiles

    def _run_stage2_image(
        self,
        tiles: list[tuple[Window, Window]],
        dst: np.ndarray,
        imap: IntensityMap,
        done: int,
        total: int,
        progress: Callable[[int, int], None] | None,
        cancel: Callable[[], bool] | None,
    ) -> int:
        """The paper's stage 2: over the whole (repaired) plane, not composited."""
        results = []
        for rd, wr in tiles:  # read everything before writing: tiles overlap through halos
            if cancel is not None and cancel():
                raise Cancelled(f"inpainting cancelled after {done} of {total} windows")
            if _outside_torch(self.optimize):
                y = self.optimize.refine(imap.to_unit(dst[rd.slices]))
            else:
                y = self._refine_torch(imap.to_unit(dst[rd.slices]))
            oy, ox = wr.y0 - rd.y0, wr.x0 - rd.x0
            results.append((wr, imap.from_unit(y[oy : oy + wr.shape[0], ox : ox + wr.shape[1]])))
            done += 1
            if progress is not None:
                progress(done, total)
        for wr, values in results:
            dst[wr.slices] = values
        return done

    def _refine_torch(self, tile: np.ndarray) -> np.ndarray:
        """Stage 2 (torch) over one ``[h,w,C]`` tile in [0, 1], not composited."""
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(tile).to(self.device).permute(2, 0, 1)[None]
            gray = x.shape[1] == 1
            if gray:
                x = x.expand(-1, 3, -1, -1)
            y = self.optimize(x)
            if gray:
                y = y.mean(dim=1, keepdim=True)
            return y[0].permute(1, 2, 0).float().cpu().numpy()


def _outside_torch(model: Any) -> bool:
    """True for networks that run outside torch on numpy windows (ONNX Runtime)."""
    return model is not None and callable(getattr(model, "fill", None))


def _band_boxes(hole: np.ndarray, halo: int) -> list[tuple[slice, slice]]:
    """Disjoint boxes covering every hole pixel of ``hole`` together with its halo.

    The boxes of the hole's 8-connected components (coarse 8 px cells), grown by
    ``halo`` and clipped to the window, are merged while any two overlap or touch (or
    while merging costs less than the two boxes' area plus a 64×64 call overhead).
    """
    from scipy import ndimage

    from rnon_engine.inference.tiling import block_any

    h, w = hole.shape
    cell = 8
    coarse = block_any(hole, cell)
    labels, _ = ndimage.label(coarse, structure=np.ones((3, 3), dtype=bool))
    boxes = []
    for sl in ndimage.find_objects(labels):
        if sl is None:
            continue
        boxes.append(
            [
                max(0, sl[0].start * cell - halo),
                max(0, sl[1].start * cell - halo),
                min(h, sl[0].stop * cell + halo),
                min(w, sl[1].stop * cell + halo),
            ]
        )
    overhead = 64 * 64
    merged = True
    while merged and len(boxes) > 1:
        merged = False
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                p, q = boxes[a], boxes[b]
                u = [min(p[0], q[0]), min(p[1], q[1]), max(p[2], q[2]), max(p[3], q[3])]
                touch = p[0] <= q[2] and q[0] <= p[2] and p[1] <= q[3] and q[1] <= p[3]
                area = (u[2] - u[0]) * (u[3] - u[1])
                separate = sum((r[2] - r[0]) * (r[3] - r[1]) for r in (p, q)) + overhead
                if touch or area <= separate:
                    boxes[a] = u
                    del boxes[b]
                    merged = True
                    break
            if merged:
                break
    return [(slice(y0, y1), slice(x0, x1)) for y0, x0, y1, x1 in boxes]


def _batches(windows: list[Window], size: int, budget: int = 0) -> Iterator[list[Window]]:
    """Consecutive runs of windows of equal shape and kind.

    A run is at most ``size`` windows long, or longer for small windows: as many as fit in
    ``budget`` pixels.
    """
    batch: list[Window] = []
    limit = size
    for win in windows:
        if batch and (
            len(batch) >= limit or win.shape != batch[0].shape or win.packed != batch[0].packed
        ):
            yield batch
            batch = []
        if not batch:
            h, w = win.shape
            limit = max(size, budget // (h * w)) if win.packed else size
        batch.append(win)
    if batch:
        yield batch


def _channel_axis(image: np.ndarray, channel_axis: int | str | None) -> int | None:
    nd = image.ndim
    if isinstance(channel_axis, str):
        if channel_axis != "auto":
            raise InputError(f"channel_axis must be 'auto', an int or None, got {channel_axis!r}")
        if nd == 2:
            return None
        if nd == 3:
            return 2
        if nd < 2:
            raise InputError(f"image must have at least 2 dimensions, got shape {image.shape}")
        raise InputError(
            f"image has {nd} dimensions {image.shape}: say which axis holds the channels with "
            "channel_axis=<int> (or channel_axis=None if there is none); the last two other "
            "axes are taken as Y, X and the rest as leading (Z/T) axes"
        )
    if channel_axis is None:
        if nd < 2:
            raise InputError(f"image must have at least 2 dimensions, got shape {image.shape}")
        return None
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, int | np.integer):
        raise InputError(f"channel_axis must be 'auto', an int or None, got {channel_axis!r}")
    if nd < 3:
        raise InputError(
            f"an image with a channel axis needs at least 3 dimensions, got shape {image.shape}"
        )
    if not -nd <= channel_axis < nd:
        raise InputError(f"channel_axis {channel_axis} is out of range for shape {image.shape}")
    return int(channel_axis) % nd


def _check_mask(
    mask: np.ndarray,
    spatial: tuple[int, ...],
    leading: tuple[int, ...],
    image_shape: tuple[int, ...],
    ch: int | None,
) -> bool:
    """Check the mask; True if it holds one mask per plane, False if it is broadcast."""
    if mask.dtype.kind not in "buif":
        raise InputError(f"mask must be boolean or numeric (nonzero = repair), got {mask.dtype}")
    if mask.dtype.kind == "f" and np.isnan(mask).any():
        raise InputError("mask contains NaN; use 0 for pixels to keep and nonzero to repair")
    if mask.shape == tuple(spatial):
        return False
    if leading and mask.shape == tuple(leading) + tuple(spatial):
        return True
    hint = ""
    if ch is not None and image_shape[:-1] == mask.shape:
        pass
    elif len(image_shape) == 3 and mask.shape == image_shape[1:]:
        hint = " (a Z/T stack? pass channel_axis=None)"
        if image_shape[0] in (3, 4):
            hint = (
                f" (channels first, e.g. {'RGB' if image_shape[0] == 3 else 'RGBA'} as C×Y×X? "
                "pass channel_axis=0; a Z/T stack of grayscale planes? pass channel_axis=None)"
            )
    planes = f" or {tuple(leading) + tuple(spatial)} (one per plane)" if leading else ""
    raise InputError(
        f"mask shape {mask.shape} does not match image shape {image_shape}: expected "
        f"{tuple(spatial)} (Y, X){planes}{hint}"
    )
