"""Give the memory that a large inpainting call freed back to the operating system.

glibc's allocator keeps freed blocks of its heaps (and the top of each arena) for later
use, so a process that runs many large calls (napari, a notebook, an ``rnon-batch``
worker) sees its resident size drift up and down by hundreds of MB between identical calls
although nothing stays alive (see docs/benchmarks.md, "Soak"). :func:`release_memory`
calls glibc's ``malloc_trim(0)`` after a call, which returns the free pages of every arena.
On other C libraries (macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable

__all__ = ["release_memory"]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """The C library's ``malloc_trim`` (glibc), or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_memory() -> bool:
    """Return freed heap memory to the system (glibc ``malloc_trim(0)``).

    Returns:
        True when ``malloc_trim`` ran, False on a platform without it.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
