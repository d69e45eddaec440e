"""Run exported ONNX generators with ONNX Runtime on the CPU, without torch.

:class:`OnnxNetworks` is what :meth:`Inpainter.from_pretrained("…/rnon_repair.onnx")
<rnon_engine.inference.Inpainter.from_pretrained>` puts in place of the torch networks:
the inpainter keeps its planning, tiling, intensity mapping, blending and compositing and
hands each batch of windows to :meth:`OnnxNetworks.fill` (numpy in, numpy out), so
nothing on this path imports torch (``rnon-batch --workers`` processes stay small).

Differences from the torch path, all within float rounding on the hole pixels
(``tests/test_export.py`` checks max |difference| <= :data:`TOLERANCE` on [0, 1] values):
stage 2 (band mode) runs on one box per batch, the holes' bounding box grown by the
network's receptive radius (``halo``), instead of one box per group of holes; since the
box holds every hole pixel's receptive field either way, only the cost differs.

The files are written by :func:`rnon_engine.export.onnx_export.export_onnx`; their
metadata (model name, config, stage-2 file name) is read from the ONNX model itself.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnon_engine.errors import InputError, WeightsError
from rnon_engine.inference.classical import spare_core, start_guide_fill
from rnon_engine.inference.tiling import hole_box

__all__ = [
    "FORMAT_NAME",
    "MACHINE_SUFFIX",
    "TOLERANCE",
    "OnnxConfig",
    "OnnxNetworks",
    "is_onnx_path",
    "read_onnx_metadata",
    "resolve_onnx",
]

FORMAT_NAME = "napari-rnon-onnx"
#: Largest difference from the torch path on values in [0, 1] that the tests accept.
TOLERANCE = 1e-4
#: The name ending of graphs that ONNX Runtime optimised for this machine (the inpainter's
#: cache, :func:`~rnon_engine.inference.ort_runner.machine_key`): opened as they are.
MACHINE_SUFFIX = ".machine.onnx"


def is_onnx_path(name_or_path: str | os.PathLike) -> bool:
    """True for a path ending in ``.onnx`` (what ``from_pretrained`` hands to this module)."""
    return os.fspath(name_or_path).lower().endswith(".onnx")


def _runtime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise InputError(
            "running an .onnx model needs ONNX Runtime: pip install 'napari-rnon[onnx]' "
            "(or pip install onnxruntime)"
        ) from None
    return onnxruntime


def _session(path: Path, threads: int | None) -> Any:
    ort = _runtime()
    if not path.is_file():
        raise WeightsError(
            f"ONNX file not found: {path}. Export one with python -m training.export "
            "--format onnx --out DIR"
        )
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    # Idle intra-op threads sleep instead of spinning: the networks are thin (many short
    # ops), and spinning threads took the core the stage-2 guide runs on. On issue 16's
    # 4096² strokes with 2 threads: 23 s instead of 31 s, 42 s of CPU instead of 60
    # (docs/benchmarks.md, "Fifth release, fourth pass").
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if path.name.endswith(MACHINE_SUFFIX):  # optimised for this machine already
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own types for unreadable models
        raise WeightsError(
            f"{path} is not a readable ONNX model ({exc}); it may be truncated: export it again"
        ) from None


def read_onnx_metadata(path: str | os.PathLike, session: Any = None) -> dict[str, Any]:
    """The napari-rnon metadata of an exported ONNX file, JSON-decoded.

    Raises:
        WeightsError: Missing, unreadable, or not written by napari-rnon's exporter.
    """
    path = Path(path)
    sess = session if session is not None else _session(path, 1)
    raw = dict(sess.get_modelmeta().custom_metadata_map)
    if raw.get("format") != FORMAT_NAME:
        raise WeightsError(
            f"{path} is an ONNX model but not one exported by napari-rnon (no "
            f"'format: {FORMAT_NAME}' metadata); export it with python -m training.export"
        )
    meta: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            meta[key] = json.loads(value)
        except ValueError:
            meta[key] = value
    return meta


def resolve_onnx(
    path: str | os.PathLike, stage2: str | os.PathLike | None = None
) -> tuple[Path, Path | None]:
    """The repair file and its stage-2 file (named in its metadata, next to it).

    Raises:
        WeightsError: A file is missing or holds another model than expected.
    """
    path = Path(path)
    meta = read_onnx_metadata(path)
    if meta.get("model_name") != "rnon-repair":
        raise WeightsError(
            f"{path} holds {meta.get('model_name')!r}; the inpainter needs the stage-1 file "
            "(rnon_repair.onnx) of an export (rnon.onnx is for other tools)"
        )
    if stage2 is None and meta.get("stage2_file"):
        stage2 = path.parent / str(meta["stage2_file"])
        if not Path(stage2).is_file():
            raise WeightsError(
                f"{path} names its stage-2 file {meta['stage2_file']!r} but {stage2} does not "
                "exist; copy it next to the repair file or pass stage2= explicitly"
            )
    if stage2 is not None:
        name2 = read_onnx_metadata(stage2).get("model_name")
        if name2 != "rnon-optimize":
            raise WeightsError(f"stage-2 file {stage2} holds {name2!r}, not 'rnon-optimize'")
        stage2 = Path(stage2)
    return path, stage2


def _check_pair(
    path: Path, meta: dict[str, Any], role: str, other: Path, other_meta: dict[str, Any] | None
) -> None:
    """Refuse ``path`` unless its metadata has ``role`` and names ``other``'s weights.

    Raises:
        WeightsError: Another role, or other weights (or model configuration).
    """
    keys = ("source_sha256", "config", "multiple")
    same = other_meta is None or all(meta.get(k) == other_meta.get(k) for k in keys)
    if meta.get("role") != role or not same:
        raise WeightsError(
            f"{path} is not the {role} graph that goes with {other} (its metadata names "
            "another role or weights): export the model again"
        )


@dataclass(frozen=True)
class OnnxConfig:
    """What the inpainter reads of the networks' configs.

    Attributes:
        multiple: The U-Net's padding multiple (``2**depth``).
        halo: Stage 2's receptive radius in pixels (0 without stage 2).
        guide: The classical fill a guided stage 2 reads (``"none"``: not guided).
    """

    multiple: int
    halo: int
    guide: str = "none"

    @property
    def guided(self) -> bool:
        """Whether stage 2 takes a guide fill and the mask."""
        return self.guide != "none"


class OnnxNetworks:
    """Both exported generators behind the inpainter's window contract.

    Attributes:
        multiple: The U-Net's padding multiple (``2**depth``).
        halo: Stage 2's receptive radius in pixels (0 without stage 2).
        config: ``multiple`` and ``halo`` together (as the torch networks' ``config``).
        paths: The files, by stage.
    """

    def __init__(
        self,
        repair_path: str | os.PathLike,
        optimize_path: str | os.PathLike | None = None,
        threads: int | None = None,
        small_path: str | os.PathLike | None = None,
        box_paths: dict[str, Path] | None = None,
    ) -> None:
        """Open the ONNX Runtime sessions.

        Args:
            repair_path: ``rnon_repair.onnx`` of an export.
            optimize_path: ``rnon_optimize.onnx``, or None for stage 1 only.
            threads: ONNX Runtime intra-op threads (default: its own choice).
            small_path: The small-window stage-1 file (``rnon_repair_small.onnx``) of the
                same export. Given, the repair file's session opens only when a window
                too large for it comes (the inpainter's cached exports); by default, the
                one the repair file's metadata names is used when it is there.
            box_paths: The box graphs of the same export by stage (``"repair"``:
                ``rnon_repair_box.onnx``, ``"optimize"``: ``rnon_optimize_box.onnx``); by
                default those the files' metadata name, when they are there.

        Raises:
            InputError: ONNX Runtime is not installed.
            WeightsError: A file is missing, unreadable or of the wrong model.
        """
        self.paths = {"repair": Path(repair_path)}
        #: A guided stage 2's fill runs in a thread while stage 1 runs (same result).
        self.parallel_guide = spare_core(threads)
        self._threads = threads
        self._lock = threading.Lock()
        self._sessions: dict[str, Any] = {}
        self._meta: dict[str, Any] | None = None  # the stage-1 files' metadata
        self._ometa: dict[str, Any] | None = None  # the stage-2 file's metadata
        self._small_side = 0
        self._box_multiple = 0  # the repair box graph's least padding multiple
        boxes = dict(box_paths or {})
        if small_path is not None:
            # Its metadata is the repair file's (and its role): the repair graph's session
            # (the costlier one to open) opens when a window too large
            # for the small graph first comes, and its metadata is checked then.
            self.paths["repair_small"] = Path(small_path)
            if not self.paths["repair"].is_file():
                _session(self.paths["repair"], threads)  # its error names the file
        else:
            meta = self._open("repair", None)
            name = meta.get("small_windows_file")
            if name and (self.paths["repair"].parent / str(name)).is_file():
                self.paths["repair_small"] = self.paths["repair"].parent / str(name)
            if box_paths is None and meta.get("box_file"):
                boxes["repair"] = self.paths["repair"].parent / str(meta["box_file"])
        if boxes.get("repair") is not None and Path(boxes["repair"]).is_file():
            self.paths["repair_box"] = Path(boxes["repair"])
        # The small windows' graphs: in the inpainter's cache (small_path given), the box
        # graph opens now (sparse damage runs through it) and the other at its first use;
        # an export's files are all opened (and checked) now.
        small = [r for r in ("repair_box", "repair_small") if r in self.paths]
        first = small[0] if small else None
        meta = self._meta if first is None else self._open(first, self._ref("repair"))
        if small_path is None and len(small) > 1:
            self._open(small[1], self._ref("repair"))
        if meta.get("model_name") != "rnon-repair":
            raise WeightsError(f"{repair_path} holds {meta.get('model_name')!r}, not 'rnon-repair'")
        self._meta = meta
        if first is not None:
            self._small_side = int(meta["max_side"])
        if first == "repair_box":
            self._box_multiple = 2 ** int(meta["box_levels"])
        self.multiple = int(meta["multiple"])
        self.halo = 0
        guide = "none"
        if optimize_path is not None:
            self.paths["optimize"] = Path(optimize_path)
            ometa = self._open("optimize", None)
            if ometa.get("model_name") != "rnon-optimize":
                raise WeightsError(
                    f"{optimize_path} holds {ometa.get('model_name')!r}, not 'rnon-optimize'"
                )
            self.halo = int(ometa["halo"])
            guide = str((ometa.get("config") or {}).get("guide", "none"))
            where = boxes.get("optimize")
            if box_paths is None and ometa.get("box_file"):
                where = self.paths["optimize"].parent / str(ometa["box_file"])
            if where is not None and Path(where).is_file():
                self.paths["optimize_box"] = Path(where)
                self._open("optimize_box", ometa)  # cheap: a small network
        self.config = OnnxConfig(self.multiple, self.halo, guide)

    #: The metadata role of each file.
    _ROLES = {
        "repair": "repair",
        "repair_small": "repair-small",
        "repair_box": "repair-box",
        "optimize": "optimize",
        "optimize_box": "optimize-box",
    }

    def _ref(self, stage: str) -> dict[str, Any] | None:
        """The metadata a file of ``stage`` is checked against (None: not known yet)."""
        return self._meta if stage == "repair" else self._ometa

    def _open(self, role: str, ref: dict[str, Any] | None) -> dict[str, Any]:
        """Open ``role``'s session; its metadata, checked against ``ref`` (same weights).

        Raises:
            WeightsError: Not a file of that role, or of other weights.
        """
        path = self.paths[role]
        session = _session(path, self._threads)
        meta = read_onnx_metadata(path, session)
        if ref is not None or role in ("repair_small", "repair_box", "optimize_box"):
            stage = "optimize" if role.startswith("optimize") else "repair"
            others = [p for r, p in self.paths.items() if r.startswith(stage) and r != role]
            _check_pair(path, meta, self._ROLES[role], others[0] if others else path, ref)
        if role == "repair":
            self._meta = meta
        if role == "optimize":
            self._ometa = meta
        self._sessions[role] = session
        return meta

    @property
    def has_optimize(self) -> bool:
        """Whether stage 2 is loaded."""
        return "optimize" in self._sessions

    def repair(self, image: np.ndarray, holes: np.ndarray, pad_to: int | None = None) -> np.ndarray:
        """Stage 1, composited: ``image`` ``[N,3,h,w]`` float32, ``holes`` ``[N,h,w]`` bool."""
        multiple = self.multiple if pad_to is None else min(int(pad_to), self.multiple)
        feeds = {
            "image": np.ascontiguousarray(image, dtype=np.float32),
            "mask": holes[:, None].astype(np.float32),
            "pad": np.zeros(multiple, np.float32),
        }
        small = self._small_side and min(image.shape[-2:]) <= self._small_side
        if small and "repair_box" in self.paths and multiple >= self._box_multiple:
            box = hole_box(holes)
            if box is None:
                return feeds["image"].copy()
            if _in_box(box, holes.shape[1:]):
                return _run_in_box(self.session("repair_box"), feeds, box)
        role = "repair_small" if small and "repair_small" in self.paths else "repair"
        return self.session(role).run(None, feeds)[0]

    @property
    def open_roles(self) -> list[str]:
        """The roles (as in :attr:`paths`) whose sessions are open now."""
        return [role for role in self.paths if role in self._sessions]

    def session(self, role: str) -> Any:
        """The ONNX Runtime session of one of :attr:`paths`' roles.

        The roles: ``"repair"``, ``"repair_small"``, ``"repair_box"``, ``"optimize"``,
        ``"optimize_box"``. Opened now if it was left for its first use (the repair
        graph's when a small-window graph serves the small windows, and in the
        inpainter's cache the small windows' graph that is not the box graph).

        Raises:
            InputError: This model has no file of that role.
        """
        if role not in self.paths:
            raise InputError(f"this ONNX model has no {role!r} graph (it has {list(self.paths)})")
        with self._lock:
            if role not in self._sessions:
                self._open(role, self._ref("optimize" if role.startswith("optimize") else "repair"))
            return self._sessions[role]

    def optimize(
        self, image: np.ndarray, guide: np.ndarray | None = None, valid: np.ndarray | None = None
    ) -> np.ndarray:
        """Stage 2 on ``[N,3,h,w]`` float32 in [0, 1] (not composited).

        A guided stage 2 also takes ``guide`` ``[N,3,h,w]`` and ``valid`` ``[N,1,h,w]``
        (1 = known pixel). When its holes lie in a small part of the input, the box graph
        refines the box of the holes only, and the rest of the output is the input (every
        pixel there is known).
        """
        if "optimize" not in self._sessions:
            raise InputError("this ONNX model has no stage-2 (optimize) graph")
        feeds = {"image": np.ascontiguousarray(image, dtype=np.float32)}
        if self.config.guided:
            if guide is None or valid is None:
                raise InputError(f"this stage 2 is guided by a {self.config.guide} fill: pass it")
            feeds["guide"] = np.ascontiguousarray(guide, dtype=np.float32)
            feeds["valid"] = np.ascontiguousarray(valid, dtype=np.float32)
            if "optimize_box" in self.paths:
                holes = feeds["valid"][:, 0] == 0
                box = hole_box(holes)
                if box is not None and _in_box(box, holes.shape[1:]):
                    return _run_in_box(self.session("optimize_box"), feeds, box)
        return self._sessions["optimize"].run(None, feeds)[0]

    def fill(
        self,
        crops: np.ndarray,
        holes: np.ndarray,
        *,
        band: bool,
        repair: bool = True,
        pad_to: int | None = None,
    ) -> np.ndarray:
        """Fill a batch of windows as ``Inpainter`` does with the torch networks.

        Args:
            crops: ``[N,h,w,C]`` float32 in [0, 1] (C = 1 or 3), holes zeroed.
            holes: ``[N,h,w]`` bool, True = hole.
            band: Run stage 2 around the holes and composite it.
            repair: False skips stage 1 (holes already filled).
            pad_to: Padding multiple for stage 1 (default: the U-Net's own).

        Returns:
            ``[N,h,w,C]`` float32 in [0, 1].
        """
        x = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)
        gray = x.shape[1] == 1
        if gray:
            x = np.repeat(x, 3, axis=1)
        guided = band and self.has_optimize and self.config.guided
        if guided:  # reads the known pixels only: computed while stage 1 runs
            pending = start_guide_fill(
                self.config.guide, x, holes, background=repair and self.parallel_guide
            )
        comp = self.repair(x, holes, pad_to) if repair else x
        if band and self.has_optimize:
            comp = self._band(comp, holes, pending() if guided else None)
        if gray:
            comp = comp.mean(axis=1, keepdims=True)
        return np.ascontiguousarray(comp.transpose(0, 2, 3, 1), dtype=np.float32)

    def refine(self, image: np.ndarray) -> np.ndarray:
        """Stage 2 over one ``[h,w,C]`` tile (the paper's whole-image mode), not composited."""
        if self.config.guided:
            raise InputError("a guided stage 2 runs on the band around the holes, not whole")
        x = image.transpose(2, 0, 1)[None]
        gray = x.shape[1] == 1
        if gray:
            x = np.repeat(x, 3, axis=1)
        y = self.optimize(x)
        if gray:
            y = y.mean(axis=1, keepdims=True)
        return np.ascontiguousarray(y[0].transpose(1, 2, 0), dtype=np.float32)

    def _band(
        self, comp: np.ndarray, holes: np.ndarray, guide: np.ndarray | None = None
    ) -> np.ndarray:
        """Stage 2 on the holes' box plus ``halo``, composited on the holes."""
        _, h, w = holes.shape
        box = hole_box(holes)
        if box is None:
            return comp
        y0, y1, x0, x1 = box
        ys = slice(max(0, y0 - self.halo), min(h, y1 + self.halo))
        xs = slice(max(0, x0 - self.halo), min(w, x1 + self.halo))
        sub = comp[..., ys, xs]
        hsub = holes[:, None, ys, xs]
        out = comp.copy()
        if guide is None:
            refined = self.optimize(sub)
        else:
            valid = (~hsub).astype(np.float32)
            refined = self.optimize(sub, guide[..., ys, xs], valid)
        out[..., ys, xs] = np.where(hsub, refined, sub)
        return out


#: A batch goes through a box graph when its holes' box is at most this share of its
#: windows: the box graphs' slicing costs more than it saves on windows the holes fill.
BOX_SHARE = 0.5


def _in_box(box: tuple[int, int, int, int], shape: tuple[int, ...]) -> bool:
    """Whether a batch of ``shape`` windows whose holes lie in ``box`` is worth a box graph."""
    y0, y1, x0, x1 = box
    return (y1 - y0) * (x1 - x0) <= BOX_SHARE * shape[0] * shape[1]


def _run_in_box(session: Any, feeds: dict[str, np.ndarray], box: tuple[int, ...]) -> np.ndarray:
    """``session``'s box of the output, in a copy of the input image."""
    y0, y1, x0, x1 = box
    out = np.array(feeds["image"], copy=True)
    out[..., y0:y1, x0:x1] = session.run(None, {**feeds, "box": np.array(box, np.int64)})[0]
    return out
