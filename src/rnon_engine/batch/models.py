"""The inpainter of a ``rnon-batch`` run: how workers build it, cached once per process.

The driver describes the model from its weights' metadata alone
(:func:`rnon_engine.inference.provenance.describe`: bad weights are refused before any work, and the
driver never imports torch for it); each worker process builds the
:class:`~rnon_engine.inference.Inpainter` once, from a small picklable
:class:`InpainterSpec`, and keeps it for all its tasks.
"""

from __future__ import annotations

import json
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnon_engine.batch.options import BatchOptions
from rnon_engine.batch.plan import fingerprint
from rnon_engine.errors import RnonError

__all__ = ["InpainterSpec", "describe_model", "get_inpainter", "load_inpainter"]


@dataclass(frozen=True)
class InpainterSpec:
    """How a worker builds (or finds in its cache) the inpainter of a run.

    Attributes:
        name: Model name, classical method, or absolute path of a weights file.
        device: Torch device (``"auto"``, ``"cpu"``, ``"cuda:1"``...).
        tile: Largest window the network sees.
        threads: Torch threads, or None for torch's choice.
        stage2: Absolute path of stage-2 weights, or None.
        key: The cache key (model, weights provenance and settings).
    """

    name: str
    device: str
    tile: int
    threads: int | None
    stage2: str | None
    key: str

    def build(self) -> Any:
        """Load the inpainter (no cache)."""
        from rnon_engine.inference.inpainter import Inpainter

        return Inpainter.from_pretrained(
            self.name, self.device, stage2=self.stage2, tile_size=self.tile, threads=self.threads
        )


_MODELS: dict[str, Any] = {}
_MODELS_LOCK = threading.Lock()


def get_inpainter(spec: InpainterSpec) -> Any:
    """The inpainter for ``spec``, loaded at most once per process."""
    with _MODELS_LOCK:
        inp = _MODELS.get(spec.key)
        if inp is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                inp = spec.build()
            _MODELS[spec.key] = inp
        return inp


def load_inpainter(spec: InpainterSpec) -> RnonError | None:
    """Load ``spec``'s inpainter into this process's cache (on a worker: ``client.run``).

    Returns the user's error (bad weights, device...) instead of raising it, so that the
    worker does not log it with a traceback; the driver raises it.
    """
    try:
        get_inpainter(spec)
    except RnonError as exc:
        return exc
    return None


def json_safe(obj: Any) -> Any:
    """``obj`` as plain JSON types (paths and other objects as strings)."""
    return json.loads(json.dumps(obj, default=str))


def describe_model(opts: BatchOptions) -> tuple[InpainterSpec, dict[str, Any]]:
    """How workers build the model, and its provenance: from the weights' metadata only.

    Bad weights (missing, corrupt, foreign, the wrong model) are refused here, before any
    work; the networks are built (and the device checked) only where blocks run. This
    process never imports torch for it, except with ``device="auto"`` on a machine that
    may have a GPU (the recorded backend depends on it: :func:`rnon_engine.device.device_type`).
    """
    from rnon_engine.inference.provenance import describe

    prov = json_safe(
        describe(opts.model, stage2=opts.stage2, tile_size=opts.tile, device=opts.device)
    )
    key = fingerprint(
        {
            "model": opts.model,
            "stage2": opts.stage2,
            "prov": prov,
            "device": opts.device,
            "tile": opts.tile,
            "threads": opts.threads,
        }
    )
    absolute = prov["method"] == "rnon" and Path(opts.model).exists()
    spec = InpainterSpec(
        name=str(Path(opts.model).resolve()) if absolute else opts.model,
        device=opts.device,
        tile=opts.tile,
        threads=opts.threads,
        stage2=str(Path(opts.stage2).resolve()) if opts.stage2 else None,
        key=key,
    )
    return spec, prov
