"""Inference: repair any image of any size where a mask says so.

(Over 600 lines on purpose: one class, whose constructor, ``from_pretrained`` and
``inpaint`` each document their many options at length; the per-plane work lives in
:mod:`~rnon_engine.inference.plane_run`, the planning in :mod:`~rnon_engine.inference.tiling`,
the array rule in :mod:`~rnon_engine.inference.layout`.)

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
  (optimize) runs on a band around the holes, :data:`STAGE2_HALO` px wide (at most its
  receptive radius ``OptimizeConfig.halo``; ``stage2_halo=None`` for all of it; one box
  per group of nearby holes), and is composited again, so the whole-image colour shift
  that the paper reports cannot happen.
- Large holes are covered by blended windows of ``tile_size`` px, smaller for long thin
  holes (sized to their thickness, ``grid_tile="auto"``, overlapping less, computed
  unpadded and batched).
  ``stage2_region="image"`` restores the paper's behaviour: stage 2 over the whole image,
  not composited (pixels outside the mask then change too: use it to reproduce the paper,
  not for data).
- Grayscale planes (and each channel of a multichannel image other than RGB/RGBA) are fed
  to the 3-channel network replicated to 3 channels, and the mean of the 3 output channels
  is taken back.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rnon_engine.device import resolve_device
from rnon_engine.errors import InputError
from rnon_engine.inference.background import in_thread
from rnon_engine.inference.classical import CLASSICAL_METHODS, spare_core, start_guide_fill
from rnon_engine.inference.classical import WINDOW_COST as classical_window_cost
from rnon_engine.inference.classical import fill as classical_fill
from rnon_engine.inference.inputs import as_array, check_out, into
from rnon_engine.inference.intensity import check_dtype, intensity_map
from rnon_engine.inference.layout import PlaneLayout
from rnon_engine.inference.memory import release_memory
from rnon_engine.inference.ort_runner import BACKENDS, OrtRunner, cache_dir, pick_backend
from rnon_engine.inference.plane_run import PlaneRun, Progress
from rnon_engine.inference.provenance import build_provenance, describe
from rnon_engine.inference.settings import (
    NET_WINDOW_COST,
    NET_WINDOW_MULTIPLE,
    STAGE2_HALO,
    check_settings,
    default_margin,
)
from rnon_engine.inference.stack_context import DEFAULT_CONTEXT_PLANES, inpaint_with_context
from rnon_engine.inference.tiling import Window, band_boxes, plan_tiles
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


class Inpainter:
    """Repairs images with RNON (repair + optimize generators) or a classical method.

    Attributes:
        name: What it was made from (``"default"``, a weights path, ``"telea"``...).
        method: ``"rnon"`` or the classical method's name.
        device: The torch device of the networks (None for classical methods).
        provenance: Method, weights paths and SHA-256, package version and stages: what
            outputs should record.
    """

    #: Default ``context_planes`` of :meth:`inpaint` (2 for ``"neighbours"`` and ``"stack"``).
    context_planes: int = 0
    #: Stack weights used with ``context_planes > 0`` (``"default"``: the packaged stack
    #: model; None: the classical ``neighbours`` fill). See
    #: :func:`rnon_engine.inference.stack_context.stack_filler`.
    stack_weights: str | None = None

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
        stage2_halo: int | None = STAGE2_HALO,
        stage2_min_width: int = 0,
        grid_tile: int | str | None = "auto",
        pixel_fit: bool = False,
        threads: int | None = None,
        name: str | None = None,
        provenance: dict[str, Any] | None = None,
        backend: str = "auto",
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
            overlap: Overlap of blended windows over large holes (default ``tile_size // 4``;
                the smaller ``grid_tile="auto"`` windows over thin holes overlap by it
                scaled to their side and divided by ``tiling.THIN_OVERLAP_DIVISOR``).
            batch_size: Windows per forward call (default 1 on the CPU, 8 on a GPU); small
                windows of one size are batched further, up to ``tile_size²`` pixels.
            window_multiple: Networks: small-hole windows are rounded up to a multiple of
                this and computed at that size (default :data:`NET_WINDOW_MULTIPLE` when
                the repair model declares ``supports_pad_to = True``, i.e. its ``forward``
                takes ``pad_to``, else its padding multiple). The U-Net's ``2**depth``
                (256 for the default model) gives
                windows padded as in training, at several times the cost for small holes.
            stage2_region: ``"band"`` (stage 2 around the holes, composited) or
                ``"image"`` (the paper: stage 2 over the whole image, not composited).
            stage2_halo: Band mode: context (px) around each group of holes that stage 2
                sees (default :data:`STAGE2_HALO`, capped at its receptive radius). None:
                the whole receptive radius (``OptimizeConfig.halo``), exactly what stage 2
                over the whole window gives.
            stage2_min_width: Band mode: stage 2 refines a window only when a square of
                this side fits in one of its holes; 0 (default) refines every window.
                Skipping narrow damage saves most of stage 2's cost but loses 0.04-0.2 dB
                of hole PSNR on dust, spots and scratches (docs/benchmarks.md). A guided
                stage 2 (``OptimizeConfig.guide``, the default model's) ignores it: it
                refines every hole, where it gains most.
            grid_tile: Networks: side of the blended windows over large holes (see
                :func:`rnon_engine.inference.tiling.plan_tiles`): ``"auto"`` (default)
                sizes them to the holes' thickness, None uses ``tile_size``. Classical
                methods always use ``tile_size``.
            pixel_fit: Networks: size the small-hole windows to their hole pixels' box
                (``plan_tiles(fit_pixels=True)``) rather than to its 8 px cells: the same
                ``margin`` of context around every hole pixel, in smaller windows.
            threads: If given, ``torch.set_num_threads(threads)`` (a process-wide setting).
                ``threads=1`` also keeps a guided stage 2's classical fill on the calling
                thread; otherwise, with a second core, it runs in a thread beside stage 1
                (:attr:`parallel_guide`; the same pixels either way).
            name: Name recorded in :attr:`provenance`.
            provenance: Extra provenance entries (weights paths, hashes).
            backend: What runs the torch networks: ``"torch"`` (eager), ``"onnxruntime"``
                (:mod:`~rnon_engine.inference.ort_runner`: the same networks exported once
                and cached, about twice as fast on a CPU) or ``"auto"`` (ONNX Runtime on
                the CPU when it is installed and the weights come from files, i.e.
                ``provenance`` holds their ``sha256``; torch otherwise).

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
        #: A guided stage 2's classical fill is computed in a thread while stage 1 runs
        #: (same result; on when the process has a second core and ``threads`` != 1).
        self.parallel_guide = spare_core(threads)
        self._threads = threads
        self.stage2_region = stage2_region
        if stage2_min_width < 0:
            raise InputError(f"stage2_min_width must be >= 0, got {stage2_min_width}")
        self.stage2_min_width = int(stage2_min_width)
        if stage2_halo is not None and stage2_halo < 0:
            raise InputError(f"stage2_halo must be >= 0 or None, got {stage2_halo}")
        self.stage2_halo = stage2_halo
        if backend not in BACKENDS:  # fails here for every method
            raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = "torch"
        self._backend_asked = backend
        self._ort: OrtRunner | None = None
        self._ort_opening: Callable[[], OrtRunner] | None = None
        self._ort_key = ""
        self.grid_tile = grid_tile if repair_model is not None else None
        self.pixel_fit = bool(pixel_fit) and repair_model is not None
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
            # The exported graph runs stage 2 on one box per batch with its full receptive
            # radius (the exact band); the narrower torch band (stage2_halo) is not offered.
            self.stage2_halo = None
            self.backend = "onnxruntime"
        else:
            self.method = "rnon"
            self.device = resolve_device(device)
            self.repair = repair_model.to(self.device).eval()
            self.optimize = (
                optimize_model.to(self.device).eval() if optimize_model is not None else None
            )
            self.batch_size = batch_size or (1 if self.device.type == "cpu" else 8)
            native = int(getattr(repair_model, "multiple", 1))
            takes_pad = bool(getattr(repair_model, "supports_pad_to", False))
            sha = (provenance or {}).get("sha256") or {}
            roles = ["repair", "optimize"] if optimize_model is not None else ["repair"]
            pad_mode = getattr(getattr(repair_model, "config", None), "pad_mode", None)
            exportable = pad_mode == "hole" and all(r in sha for r in roles)
            self.backend = pick_backend(backend, self.device.type, exportable)
            self._ort_key = "-".join(str(sha[r])[:16] for r in roles) if exportable else ""
            if self.backend == "onnxruntime":
                # With the model, not in the first call (a few tens of ms): ONNX Runtime, and
                # the modules that open the cached export (the first batch waits for them).
                import onnxruntime  # noqa: F401

                import rnon_engine.export.onnx_export  # noqa: F401
                import rnon_engine.inference.onnx_model  # noqa: F401
        if self.method == "rnon":
            if window_multiple is None:
                window_multiple = NET_WINDOW_MULTIPLE if takes_pad else native
            elif window_multiple < native and not takes_pad:
                raise InputError(
                    f"window_multiple={window_multiple} needs a repair model that supports "
                    f"pad_to (supports_pad_to = True); this one pads to {native}: "
                    "leave window_multiple unset"
                )
            if window_multiple < 1 or window_multiple & (window_multiple - 1):
                raise InputError(f"window_multiple must be a power of two, got {window_multiple}")
            self.window_multiple = int(window_multiple)
            # Padded windows cost the same whatever holes they hold: pack freely then.
            self.window_cost = NET_WINDOW_COST if self.window_multiple < native else None
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        if self.stage2_guide != "none" and stage2_region != "band":
            raise InputError(
                f"this stage 2 is guided by a {self.stage2_guide} fill of the holes, so it "
                "runs on the band around them: use stage2_region='band'"
            )
        if self.stage2_guide == "biharmonic":
            # With the model, not in the first call: the guide's sparse solver
            # (sparse_biharmonic) takes 0.1-0.2 s to import.
            import scipy.sparse.linalg  # noqa: F401
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
            network=self._network_settings() if self.method == "rnon" else None,
            extra=provenance,
        )

    def _network_settings(self) -> dict[str, Any]:
        """The networks' run settings that the provenance records (as :func:`describe`)."""
        return {
            "backend": self.backend,
            "stage2_halo": self.stage2_halo,
            "grid_tile": self.grid_tile,
        }

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
                and optimize generators), ``"telea"``, ``"ns"``, ``"biharmonic"``,
                ``"neighbours"`` (stacks: the hole pixels that a plane within
                ``context_planes`` (default 2) knows are filled from it, the rest by the
                biharmonic fill; :mod:`rnon_engine.inference.stack_context`), ``"stack"``
                (stacks: the learned stack model, ``context_planes`` 2 by default, the
                packaged default model where no plane knows a pixel; other stack weights
                with ``stack_weights=PATH``; :mod:`rnon_engine.inference.stack_model`), the
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
        if text == "neighbours":  # stacks: neighbouring planes, biharmonic where none knows
            inp = cls(method="biharmonic", tile_size=tile_size, threads=threads, name=text,
                      provenance={"stack_fill": "neighbours", "fallback": "biharmonic"}, **kwargs)
            inp.context_planes = DEFAULT_CONTEXT_PLANES
            return inp
        if text in CLASSICAL_METHODS:
            return cls(method=text, tile_size=tile_size, threads=threads, name=text, **kwargs)
        if text == "stack":  # stacks: the learned stack model, the default model where no
            from rnon_engine.inference.stack_model import stack_provenance  # plane knows

            weights = kwargs.pop("stack_weights", None)
            prov = stack_provenance(weights)
            inp = cls.from_pretrained(
                "default", device, stage2=stage2, tile_size=tile_size, threads=threads, **kwargs
            )
            inp.name = text
            inp.stack_weights = "default" if weights is None else os.fspath(weights)
            inp.context_planes = DEFAULT_CONTEXT_PLANES
            inp.provenance.update(name=text, **prov)
            return inp
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

    @property
    def stage2_guide(self) -> str:
        """The classical fill stage 2 reads besides the stage-1 result (``"none"``: the paper's)."""
        config = getattr(self.optimize, "config", None) if self.method == "rnon" else None
        return str(getattr(config, "guide", "none") or "none")

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
        context_planes: int | None = None,
        stack_axis: int = 0,
        out: np.ndarray | None = None,
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
                means there is none. The spatial axes are the last two other axes (the
                rule of :class:`~rnon_engine.inference.layout.PlaneLayout`).
            progress: Called as ``progress(done, total)`` after every window.
            cancel: Called before every batch of windows; True raises
                :class:`~rnon_engine.errors.Cancelled`.
            context_planes: ``K > 0``: hole pixels known in one of the ``K`` planes on
                either side along ``stack_axis`` are filled from them first (the
                ``neighbours`` fill, :mod:`rnon_engine.inference.stack_context`, or the
                learned stack model for ``"stack"`` and ``"auto"``), the rest by this
                inpainter; a 3-D image is then a ``Z×Y×X`` stack under
                ``channel_axis="auto"``. None: :attr:`context_planes` (0, or 2 for
                ``"neighbours"`` and ``"stack"``).
            stack_axis: The image axis along which planes are neighbours (a leading axis).
            out: Write the result into this numpy array instead of a new one: the image's
                shape and dtype, writeable. It may be the image itself, which is then
                repaired in place (not with ``stages="optimize"``, which reads the values
                under the mask); a call that is cancelled or fails half-way may leave
                some holes of ``out`` filled, never a pixel outside the mask changed.

        Returns:
            A new array (``out`` when given), same shape and dtype; pixels with
            ``mask == 0`` are unchanged.

        Raises:
            InputError: The image, mask or an argument is not acceptable.
            Cancelled: ``cancel()`` returned True.
        """
        if stages not in _STAGES:
            raise InputError(f"stages must be one of {_STAGES}, got {stages!r}")
        if context_planes is None:
            context_planes = self.context_planes
        if out is not None:
            image = as_array(image, "image")
            check_out(out, image)
            if stages == "optimize" and out is image:
                raise InputError(
                    "stages='optimize' reads the values under the mask, so it cannot repair "
                    "the image in place: give another array as out, or none"
                )
        if context_planes:  # stacks: the neighbouring planes first (stack_context.py)
            result = inpaint_with_context(
                self, image, mask, context_planes, stack_axis=stack_axis, stages=stages,
                channel_axis=channel_axis, progress=progress, cancel=cancel,
            )
            return result if out is None else into(out, result)
        image, mask = as_array(image, "image"), as_array(mask, "mask")
        check_dtype(image.dtype)
        layout = PlaneLayout.of(image.shape, channel_axis)
        ch = layout.channel_axis
        view = layout.channels_last(image)
        spatial = layout.spatial
        if min(spatial) < 1:
            raise InputError(f"image has an empty spatial axis: shape {image.shape}")
        per_plane = layout.check_mask(mask)
        holes = mask != 0
        planes = layout.planes
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
            return image.copy() if out is None else into(out, image)
        self.prepare()  # while the windows are planned
        optimize_only = stages == "optimize"
        use_stage2 = stages != "repair" and self.optimize is not None and self.method == "rnon"

        # Plan every plane first: the total for progress, and nothing fails half-way.
        groups = layout.groups
        plans = {
            key: plan_tiles(
                holes[key],
                self.tile_size,
                self.margin,
                self.overlap,
                multiple=self.window_multiple,
                window_cost=self.window_cost,
                grid_tile=self.grid_tile,
                fit_pixels=self.pixel_fit,
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

        # In place too: a window reads the known pixels of its crop only (its holes, all
        # of the plane's holes in it, are zeroed before stage 1), so the fills written
        # by earlier windows are never read; stages="optimize" is refused in place.
        # With a core to spare, the image is copied into the result in a thread while the
        # first batches are computed, and waited for before the first write (PlaneRun.run's
        # ``before_write``): a new array's first writes are page faults (tens of ms for a
        # 4096² RGB image) that would otherwise delay every window.
        out = np.empty_like(image, order="C") if out is None else out  # as image.copy()
        if self.parallel_guide:  # a core to spare (classical.spare_core)
            copied = in_thread(into, out, image, name="rnon-copy")
        else:
            into(out, image)
            copied = lambda: out  # noqa: E731
        oview = layout.channels_last(out)
        tally = Progress(total, progress, cancel)
        band = use_stage2 and self.stage2_region == "band"

        native = int(getattr(self.repair, "multiple", 1))
        workers = self.batch_workers()

        def fill(crops: np.ndarray, hmask: np.ndarray, win: Window) -> np.ndarray:
            # Packed windows and blended ones smaller than the U-Net's multiple are computed
            # at their size; the whole-plane window is padded as in training.
            small = win.packed or (win.blend and min(win.shape) < native)
            pad_to = self.window_multiple if small else None
            return self._fill(crops, hmask, band, repair=not optimize_only, pad_to=pad_to)

        try:
            for unit in units:
                hole = holes[unit.hole_key]
                plane = view[unit.index]
                oplane = oview[unit.index]
                if unit.channels is None:
                    src, dst = plane[..., None], oplane[..., None]
                else:
                    src, dst = plane[..., unit.channels], oplane[..., unit.channels]
                run = PlaneRun(src, dst, hole, intensity_map(src, hole=hole), tally)
                if not (optimize_only and image_tiles):
                    run.run(
                        plans[unit.hole_key],
                        fill,
                        batch_size=self.batch_size,
                        budget=self.tile_size**2,
                        zero_holes=not optimize_only,
                        workers=workers,
                        before_write=copied,
                    )
                if image_tiles:
                    copied()  # stage 2 over the whole plane reads the result
                    run.run_whole(image_tiles, self._refine_whole)
        finally:  # never return (or raise) while the copy still writes into out
            copied()
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
            guided = band and self.stage2_guide != "none"
            if guided:
                # The guide reads only the known pixels (those of x): it is computed while
                # stage 1 runs, in a thread when a core is free.
                pending = start_guide_fill(
                    self.stage2_guide,
                    np.repeat(crops.transpose(0, 3, 1, 2), 3 if gray else 1, axis=1),
                    holes,
                    background=repair and self.parallel_guide and self.batch_workers() == 1,
                )
            if not repair:
                comp = x
            else:
                if pad_to is not None and pad_to >= getattr(self.repair, "multiple", 1):
                    pad_to = None
                comp = valid * x + (1 - valid) * self._run_repair(x, valid, pad_to)
            if band:
                # Stage 2 asked alone ("optimize") runs wherever there are holes, and so
                # does a guided one (what it adds is largest on the smallest holes).
                guide = None
                if guided:
                    width = 0
                    guide = torch.from_numpy(pending()).to(comp.device, comp.dtype)
                else:
                    width = self.stage2_min_width if repair else 0
                comp = self._stage2_band(comp, valid, holes, width, guide)
            if gray:
                comp = comp.mean(dim=1, keepdim=True)
            return comp.permute(0, 2, 3, 1).float().cpu().numpy()

    def _stage2_band(
        self,
        comp: torch.Tensor,
        valid: torch.Tensor,
        holes: np.ndarray,
        min_width: int = 0,
        guide: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run stage 2 around the holes (within the window) and composite it.

        Stage 2 runs on boxes: each group of holes gets its box plus the halo (the
        network's receptive radius, or ``stage2_halo`` when smaller), and boxes that
        overlap are merged, so every hole pixel's receptive field (or its truncated view)
        lies inside exactly one box. Scattered small holes thus cost their boxes, not the
        window. When one box over the holes of the whole batch costs at most 1.5 times as
        much, stage 2 runs once on that box for the batch (fewer, larger calls for a
        device). Windows in which no ``min_width`` square fits in a hole are left as
        they are. ``guide``: the classical fill a guided stage 2 reads (same shape as
        ``comp``).
        """
        wide = [_has_square(hole, min_width) for hole in holes]
        if not any(wide):
            return comp
        if not all(wide):  # stage 2 on the wide ones only
            idx = torch.as_tensor(np.flatnonzero(wide))
            out = comp.clone()
            out[idx] = self._stage2_band(
                comp[idx], valid[idx], holes[idx.numpy()], 0,
                None if guide is None else guide[idx],
            )
            return out

        def refine(sel: tuple) -> torch.Tensor:
            if guide is None:
                return self._run_optimize(comp[sel])
            return self._run_optimize(comp[sel], guide[sel], valid[sel])

        halo = int(getattr(getattr(self.optimize, "config", None), "halo", 0) or 0)
        if self.stage2_halo is not None:
            halo = min(halo, self.stage2_halo)
        n, h, w = holes.shape
        per_item = [band_boxes(hole, halo) for hole in holes]
        rows = np.flatnonzero(holes.any(axis=(0, 2)))
        cols = np.flatnonzero(holes.any(axis=(0, 1)))
        ys = slice(max(0, rows[0] - halo), min(h, rows[-1] + 1 + halo))
        xs = slice(max(0, cols[0] - halo), min(w, cols[-1] + 1 + halo))
        boxes_area = sum((y.stop - y.start) * (x.stop - x.start) for b in per_item for y, x in b)
        out = comp.clone()
        if n * (ys.stop - ys.start) * (xs.stop - xs.start) <= 1.5 * boxes_area:
            sel = (slice(None), slice(None), ys, xs)
            sub, vsub = comp[sel], valid[sel]
            out[sel] = vsub * sub + (1 - vsub) * refine(sel)
            return out
        for i, boxes in enumerate(per_item):
            for ys, xs in boxes:
                sel = (slice(i, i + 1), slice(None), ys, xs)
                sub, vsub = comp[sel], valid[sel]
                out[sel] = vsub * sub + (1 - vsub) * refine(sel)
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

    def batch_workers(self) -> int:
        """How many batches of windows are computed at once (in threads).

        Two when ONNX Runtime runs the networks' cached export and the process may use a
        second core (``threads`` != 1), each with half of the CPU threads: the networks
        are thin, so two batches on one thread each finish sooner than one batch on two
        threads (docs/benchmarks.md, "Sixth pass"); a guided stage 2's fill then runs in
        its batch's thread. One otherwise. The pixels are the same either way.
        """
        if self.repair is None or not self.parallel_guide or self._runner() is None:
            return 1
        return 2

    def _new_runner(self) -> OrtRunner:
        import torch

        total = self._threads or torch.get_num_threads()
        # Split between the two batch workers (batch_workers) when there are two.
        threads = max(1, total // 2) if self.parallel_guide else total
        return OrtRunner(self.repair, self.optimize, self._ort_key, threads)

    def prepare(self) -> None:
        """Start opening the ONNX Runtime sessions in a thread, if they are not open yet.

        :meth:`inpaint` calls it once the inputs are accepted, so that the sessions open
        while the windows are planned; a caller with other work to do first (``"auto"``
        grouping the holes) may call it earlier. Nothing to do on the torch backend.
        Where the sessions are first needed, the result (or an error) is taken.
        """
        if self.backend != "onnxruntime" or _outside_torch(self.repair):
            return
        if self._ort is None and self._ort_opening is None:
            self._ort_opening = in_thread(self._new_runner, name="rnon-open")

    def _runner(self) -> OrtRunner | None:
        """The ONNX Runtime runner when that backend is chosen (exported on first use)."""
        if self.backend != "onnxruntime" or _outside_torch(self.repair):
            return None
        if self._ort is None:
            opening, self._ort_opening = self._ort_opening, None
            try:
                self._ort = opening() if opening is not None else self._new_runner()
            except Exception as exc:  # an unwritable cache, an exporter failure...
                where = f"cache folder {cache_dir()}; set RNON_CACHE_DIR to a writable folder"
                if self._backend_asked == "onnxruntime":
                    raise InputError(
                        f"backend='onnxruntime' could not export the networks ({exc}; {where}), "
                        "or use backend='torch'"
                    ) from None
                # "auto": a speed-up, not a requirement; the same result with eager torch.
                warnings.warn(
                    f"running the networks with torch: the ONNX Runtime export failed ({exc}; "
                    f"{where})",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self.backend = "torch"
                self.provenance.update(self._network_settings())  # what really ran
                return None
        return self._ort

    def _run_repair(
        self, x: torch.Tensor, valid: torch.Tensor, pad_to: int | None
    ) -> torch.Tensor:
        """Stage 1 on ``x`` ``[N,3,h,w]`` (``pad_to`` None: the network's own multiple)."""
        ort = self._runner()
        if ort is not None:
            return ort.repair(x, valid, pad_to)
        if pad_to is None:
            return self.repair(x, valid)
        return self.repair(x, valid, pad_to=pad_to)

    def _run_optimize(
        self,
        x: torch.Tensor,
        guide: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Stage 2 on ``x`` ``[N,3,h,w]``, not composited (guided: with guide and mask)."""
        ort = self._runner()
        if guide is None:
            return self.optimize(x) if ort is None else ort.optimize(x)
        return self.optimize(x, guide, valid) if ort is None else ort.optimize(x, guide, valid)

    def _refine_whole(self, crop: np.ndarray) -> np.ndarray:
        """Stage 2 on one ``h×w×C`` crop in [0, 1] (whole-image mode, not composited)."""
        if _outside_torch(self.optimize):
            return self.optimize.refine(crop)
        return self._refine_torch(crop)

    def _refine_torch(self, tile: np.ndarray) -> np.ndarray:
        """Stage 2 (torch) over one ``[h,w,C]`` tile in [0, 1], not composited."""
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(tile).to(self.device).permute(2, 0, 1)[None]
            gray = x.shape[1] == 1
            if gray:
                x = x.expand(-1, 3, -1, -1)
            y = self._run_optimize(x)
            if gray:
                y = y.mean(dim=1, keepdim=True)
            return y[0].permute(1, 2, 0).float().cpu().numpy()


def _outside_torch(model: Any) -> bool:
    """True for networks that run outside torch on numpy windows (ONNX Runtime)."""
    return model is not None and callable(getattr(model, "fill", None))


def _has_square(hole: np.ndarray, side: int) -> bool:
    """True if a ``side × side`` square of hole pixels fits in ``hole`` (always for side <= 1)."""
    if side <= 1:
        return bool(hole.any())
    if min(hole.shape) < side:
        return False
    # Box sums from the integral image: a square is all hole where its sum is side².
    acc = np.zeros((hole.shape[0] + 1, hole.shape[1] + 1), np.int32)
    np.cumsum(np.cumsum(hole, axis=0, dtype=np.int32), axis=1, out=acc[1:, 1:])
    box = acc[side:, side:] - acc[:-side, side:] - acc[side:, :-side] + acc[:-side, :-side]
    return bool((box == side * side).any())
