"""The torch networks' forward passes run by ONNX Runtime on the CPU.

On a CPU, ONNX Runtime runs both generators about twice as fast as eager torch at the
window shapes the inpainter uses (``benchmarks/bench_backends.py``, docs/benchmarks.md),
with outputs within float rounding of torch's (the tests bound the difference). An
:class:`OrtRunner` exports a pair of loaded generators once (the export layer's graphs) into
a cache folder keyed by the weights files' SHA-256, then answers the inpainter's two calls
with torch tensors in and out, so that planning, the stage-2 band and compositing stay the
torch path's, setting for setting (``stage2_halo`` included).

The cache folder is ``$RNON_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/napari-rnon`` (or
``~/.cache/napari-rnon``); an export costs a few seconds once per weights version.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnon_engine.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["BACKENDS", "OrtRunner", "cache_dir", "machine_key", "ort_available", "pick_backend"]

#: Accepted ``backend`` settings of :class:`~rnon_engine.inference.Inpainter`.
BACKENDS = ("auto", "torch", "onnxruntime")


def ort_available() -> bool:
    """Whether ONNX Runtime and the ``onnx`` package (for the export) are installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def pick_backend(backend: str, device_type: str | None, exportable: bool) -> str:
    """The backend that runs: ``"torch"`` or ``"onnxruntime"``.

    ``"auto"`` is ONNX Runtime on the CPU when it is installed and the model can be
    exported (``pad_mode="hole"``, weights from files), torch otherwise.

    Raises:
        InputError: An unknown backend, or ``"onnxruntime"`` where it cannot run.
    """
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return "torch"
    possible = device_type == "cpu" and exportable
    if backend == "auto":
        return "onnxruntime" if possible and ort_available() else "torch"
    if not possible:
        raise InputError(
            "backend='onnxruntime' runs networks loaded from weights files (pad_mode='hole') "
            "on the CPU: use device='cpu', or backend='torch'"
        )
    if not ort_available():
        raise InputError(
            "backend='onnxruntime' needs ONNX Runtime and onnx: pip install 'napari-rnon[onnx]'"
        )
    return "onnxruntime"


def cache_dir() -> Path:
    """Where exported graphs are kept (see the module docstring)."""
    env = os.environ.get("RNON_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "napari-rnon"


class OrtRunner:
    """Both generators' forward passes through ONNX Runtime (torch tensors in and out).

    Args:
        repair: The loaded ``"rnon-repair"`` generator (``pad_mode="hole"``).
        optimize: The ``"rnon-optimize"`` generator, or None.
        key: Names the cache entry: it must change whenever the weights do (the files'
            SHA-256).
        threads: ONNX Runtime intra-op threads (default: torch's current setting).
    """

    def __init__(
        self,
        repair: torch.nn.Module,
        optimize: torch.nn.Module | None,
        key: str,
        threads: int | None = None,
    ) -> None:
        import torch

        from rnon_engine.export.graphs import GRAPH_REVISION
        from rnon_engine.export.onnx_export import FILES, FORMAT_VERSION, OPSET, export_graphs
        from rnon_engine.nn.weights import WeightsError

        revision = f"{key}-f{FORMAT_VERSION}-o{OPSET}-g{GRAPH_REVISION}"
        folder = cache_dir() / "onnx" / revision
        paths = {
            "repair": folder / FILES["repair"],
            "optimize": folder / FILES["optimize"] if optimize is not None else None,
            # The export writes these when they apply (a push-pull stage 1, a guided stage 2).
            "small": folder / FILES["repair_small"],
            "repair_box": folder / FILES["repair_box"],
            "optimize_box": folder / FILES["optimize_box"] if optimize is not None else None,
        }
        threads = torch.get_num_threads() if threads is None else threads
        try:
            self._nets = _open(paths, threads, fresh=False)
        except WeightsError:  # not cached yet, or a damaged entry: export (again)
            # export_graphs moves finished files in place: a crash leaves no partial file.
            export_graphs(repair.cpu().float().eval(), _cpu(optimize), folder)
            self._nets = _open(paths, threads, fresh=True)
        self.paths = self._nets.paths

    def repair(self, x: torch.Tensor, valid: torch.Tensor, pad_to: int | None = None) -> Any:
        """Stage 1 as ``RepairGenerator.forward(x, valid, pad_to)`` (composited)."""
        import torch

        holes = valid[:, 0].numpy() == 0
        out = self._nets.repair(x.numpy(), holes, pad_to=pad_to)
        return torch.from_numpy(out)

    def optimize(
        self, x: torch.Tensor, guide: torch.Tensor | None = None, valid: torch.Tensor | None = None
    ) -> Any:
        """Stage 2 as ``OptimizeGenerator.forward(x[, guide, valid])``."""
        import torch

        if guide is None:
            return torch.from_numpy(self._nets.optimize(x.numpy()))
        return torch.from_numpy(self._nets.optimize(x.numpy(), guide.numpy(), valid.numpy()))


def _open(files: dict[str, Path | None], threads: int, *, fresh: bool) -> Any:
    """The sessions, on the cached pre-optimised graphs (:func:`_preoptimized`)."""
    from rnon_engine.inference.onnx_model import OnnxNetworks
    from rnon_engine.nn.weights import WeightsError

    needed = (files["repair"], files["optimize"])
    missing = [p for p in needed if p is not None and not p.is_file()]
    if missing:
        raise WeightsError(f"not exported yet: {missing[0]}")
    optional = ("small", "repair_box", "optimize_box")
    files = {
        k: None if p is None or (k in optional and not p.is_file()) else p
        for k, p in files.items()
    }
    opt = {
        k: _for_this_machine(_preoptimized(p, fresh), fresh) if p is not None else None
        for k, p in files.items()
    }
    assert opt["repair"] is not None
    boxes = {"repair": opt["repair_box"], "optimize": opt["optimize_box"]}
    return OnnxNetworks(
        opt["repair"], opt["optimize"], threads=threads, small_path=opt["small"], box_paths=boxes
    )


def _preoptimized(path: Path, fresh: bool) -> Path:
    """``path``'s graph after ONNX Runtime's hardware-independent optimisations, cached.

    Opening a session then skips them (about 0.15 s of the default model's 0.25 s);
    the hardware-specific layout passes still run at every opening, so the file may be
    shared between machines and the outputs are those of ``path`` (bit for bit, checked
    by ``tests/test_ort_runner.py``). Written next to ``path`` (``*.opt.onnx``), atomically;
    ``path`` itself when it cannot be written.
    """
    import onnxruntime as ort

    out = path.with_name(path.name.removesuffix(".onnx") + ".opt.onnx")
    return _optimized(path, out, ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, fresh)


def _for_this_machine(path: Path, fresh: bool) -> Path:
    """``path``'s graph after all of ONNX Runtime's optimisations for this machine, cached.

    The layout passes (blocked ``NCHWc`` convolutions, whose block size depends on the
    CPU's vector width) are most of what is left of opening a session, which a first call
    waits for: they are done once and saved under a name that holds :func:`machine_key`,
    so a cache folder shared by machines of other CPUs or ONNX Runtime versions never
    opens another's file. Opened with optimisations off
    (:data:`~rnon_engine.inference.onnx_model.MACHINE_SUFFIX`), it runs the same
    operations: the same outputs (``tests/test_ort_runner.py``). ``path`` itself where no
    key can be made or the file cannot be written.
    """
    import onnxruntime as ort

    from rnon_engine.inference.onnx_model import MACHINE_SUFFIX

    key = machine_key()
    if key is None:
        return path
    out = path.with_name(f"{path.name.removesuffix('.onnx')}.{key}{MACHINE_SUFFIX}")
    return _optimized(path, out, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, fresh)


def _optimized(path: Path, out: Path, level: Any, fresh: bool) -> Path:
    """``out``: ``path`` optimised by ONNX Runtime at ``level``, written once, atomically.

    ``path`` itself when it cannot be written (an unreadable graph is reported by the
    caller's own opening).
    """
    import onnxruntime as ort

    if out.is_file() and not fresh:
        return out
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = level
    opts.optimized_model_filepath = str(tmp)
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3  # not the warning that a file of level ALL is this machine's
    try:
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        os.replace(tmp, out)
    except Exception:
        tmp.unlink(missing_ok=True)
        return path
    return out


@functools.cache
def machine_key() -> str | None:
    """What ONNX Runtime's optimised graphs depend on, hashed: its version and the CPU.

    None where the CPU's features cannot be read (``/proc/cpuinfo``: Linux).
    """
    import hashlib
    import platform

    import onnxruntime as ort

    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    wanted = ("flags", "model name", "vendor_id", "Features", "CPU implementer", "CPU part")
    cpu = sorted({line.strip() for line in lines if line.split(":")[0].strip() in wanted})
    if not cpu:
        return None
    text = "\n".join([ort.__version__, ort.get_device(), platform.machine(), *cpu])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cpu(module: Any) -> Any:
    return None if module is None else module.cpu().float().eval()
