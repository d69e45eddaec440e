"""Reading a region of an input array, and naming the damaged chunk when that fails.

A garbled or truncated zarr chunk, or a truncated TIFF strip, fails inside the codec with
an error that names neither the file nor the chunk. :func:`read_region` turns it into an
:class:`~rnon_engine.errors.InputError` that names the array, the chunk (its key and file)
and the pixels it covers, found by reading the region's chunks one by one.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from rnon_engine.batch.io import ArrayRef, write_chunks_of
from rnon_engine.errors import Cancelled, InputError

__all__ = ["read_region"]


def read_region(arr: Any, ref: ArrayRef, region: tuple[Any, ...], what: str) -> np.ndarray:
    """``arr[region]`` as a numpy array, or an error naming the chunk that cannot be read.

    Args:
        arr: The opened array (see :func:`~rnon_engine.batch.io.open_array`).
        ref: Where it is (named in the error).
        region: Slices (or integers) into ``arr``.
        what: ``"INPUT"`` or ``"MASK"``.

    Raises:
        InputError: a chunk is damaged (or unreadable); the message names it.
    """
    try:
        return np.asarray(arr[region])
    except (InputError, Cancelled, MemoryError):
        raise
    except Exception as exc:
        raise InputError(_damage_text(arr, ref, region, what, exc)) from exc


def _damage_text(
    arr: Any, ref: ArrayRef, region: tuple[Any, ...], what: str, exc: Exception
) -> str:
    where = _bad_chunk(arr, ref, region)
    kind = "TIFF file" if ref.kind == "tiff" else "array" if ref.kind == "zarr" else "file"
    return (
        f"cannot read {what} {kind} {ref.path!r}: {where}is damaged or truncated "
        f"({type(exc).__name__}: {exc}). Restore that {'chunk' if ref.kind == 'zarr' else 'file'} "
        f"from a good copy (or write it again) and run the same command again."
    )


def _bad_chunk(arr: Any, ref: ArrayRef, region: tuple[Any, ...]) -> str:
    """``"chunk KEY (file F, pixels [a:b, ...]) "`` of the first unreadable chunk, or ""."""
    try:
        shape = tuple(int(s) for s in arr.shape)
        grid = write_chunks_of(arr) if ref.kind == "zarr" else tuple(int(c) for c in arr.chunks)
        spans = []
        for d, s in enumerate(region):
            if isinstance(s, slice):
                a, b, _ = s.indices(shape[d])
            else:
                a, b = int(s), int(s) + 1
            spans.append(range(a // grid[d], max(a // grid[d] + 1, -(-b // grid[d]))))
        for coords in itertools.product(*spans):
            box = tuple(
                slice(c * g, min((c + 1) * g, n))
                for c, g, n in zip(coords, grid, shape, strict=True)
            )
            try:
                np.asarray(arr[box])
            except Exception:
                pixels = ", ".join(f"{b.start}:{b.stop}" for b in box)
                key = arr.metadata.encode_chunk_key(coords)
                if ref.kind == "zarr":
                    return f"chunk {key} (file {str(Path(ref.path) / key)!r}, pixels [{pixels}]) "
                return f"chunk {coords} (pixels [{pixels}]) "
    except Exception:  # the diagnosis must never hide the original error
        return ""
    return ""
