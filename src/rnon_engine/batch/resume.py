"""Resumption of ``rnon-batch``: fingerprint, provenance, and what an existing output means.

The output records (in its ``rnon_batch`` attributes) a fingerprint of everything that
decides its pixels. After a block's data is written, an empty marker file
``<state>/done/<index>`` is created; a run that finds an output with the same fingerprint
skips the blocks with markers. A killed run (SIGKILL included) leaves at worst a block
written without its marker, which is simply computed again (the result is deterministic).
"""

from __future__ import annotations

import datetime
import html
import json
import re
import shlex
from pathlib import Path
from typing import Any

from rnon_engine.batch.models import json_safe
from rnon_engine.batch.options import BatchOptions
from rnon_engine.errors import InputError

__all__ = [
    "ATTRS_KEY",
    "STATE_DIR",
    "decide_existing",
    "provenance",
    "read_tiff_attrs",
    "read_zarr_attrs",
    "what_is_read",
]

STATE_DIR = ".rnon-batch"
"""The folder of resume markers inside the output (or its staging store)."""
ATTRS_KEY = "rnon_batch"
"""The key of the provenance and fingerprint in the output's attributes."""


def read_zarr_attrs(path: Path) -> dict[str, Any] | None:
    """The ``rnon_batch`` attributes of an existing zarr output, or None."""
    try:
        import zarr

        return dict(zarr.open(str(path), mode="r").attrs).get(ATTRS_KEY)
    except Exception:
        return None


def read_tiff_attrs(path: Path) -> dict[str, Any] | None:
    """The ``rnon_batch`` attributes of an existing TIFF output, or None."""
    try:
        import tifffile

        with tifffile.TiffFile(str(path)) as tf:
            if tf.is_ome:
                m = re.search(r"<Description>(.*?)</Description>", tf.ome_metadata or "", re.S)
                if m:
                    return json.loads(html.unescape(m.group(1))).get(ATTRS_KEY)
            meta = tf.shaped_metadata
            if meta:
                return meta[0].get(ATTRS_KEY)
    except Exception:
        return None
    return None


def what_is_read(opts: BatchOptions, input_path: str, mask_path: Path | None) -> dict[str, Any]:
    """What a run reads and how: part of the fingerprint and of the output's attributes."""
    return {
        "input": input_path,
        "mask": str(mask_path) if mask_path else None,
        "mask_value": opts.mask_value,
        "stages": opts.stages,
    }


def provenance(
    opts: BatchOptions, prov: dict[str, Any], fp: str, extra: dict[str, Any]
) -> dict[str, Any]:
    """The output's ``rnon_batch`` attributes: tool, version, model, command, date, fingerprint."""
    from rnon_engine import __version__

    argv = opts.argv if opts.argv is not None else []
    return json_safe(
        {
            "tool": "rnon-batch",
            "package_version": __version__,
            "model": prov,
            "arguments": argv,
            "command": shlex.join(["rnon-batch", *argv]),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "fingerprint": fp,
            "complete": False,
            **extra,
        }
    )


def decide_existing(
    out_path: Path, existing: dict[str, Any] | None, fp: str, opts: BatchOptions
) -> str:
    """``"new"``, ``"resume"``, ``"complete"``, ``"overwrite"`` or raise, for an output.

    Raises:
        InputError: the output exists, was not made by this same command, and
            ``--overwrite`` was not given.
    """
    if not out_path.exists():
        return "new"
    if existing is not None and existing.get("fingerprint") == fp:
        return "complete" if existing.get("complete") else "resume"
    if opts.overwrite:
        return "overwrite"
    why = (
        "was written by rnon-batch with other arguments, input, mask or model"
        if existing is not None
        else "was not written by rnon-batch"
    )
    raise InputError(
        f"the output {str(out_path)!r} already exists and {why}; pass --overwrite to replace "
        "it, or choose another --output. (An output left by the very same command is resumed.)"
    )
