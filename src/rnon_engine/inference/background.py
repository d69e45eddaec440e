"""Work started in a thread now and waited for later (the calling thread goes on meanwhile).

The inpainters overlap a few steps with others this way: the ONNX Runtime sessions open
while the windows are planned, the image's copy into the result is made while the first
batches are computed, a guided stage 2's classical fill is solved while stage 1 runs,
``"auto"``'s input check and copy run while the holes are grouped. Each such thread
does one call and ends; numpy, OpenCV, SciPy's sparse solver and ONNX Runtime release the
GIL for their work, so on a machine with a core to spare its time is hidden.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["in_thread"]

T = TypeVar("T")


def in_thread(fn: Callable[..., T], *args: Any, name: str, **kwargs: Any) -> Callable[[], T]:
    """Start ``fn(*args, **kwargs)`` in a thread; returns a function that waits for it.

    Args:
        fn: The call to make.
        *args: Its positional arguments.
        name: The thread's name prefix (``"rnon-..."``, seen in profilers).
        **kwargs: Its keyword arguments.

    Returns:
        A function that waits for the call and returns its result, or raises what it
        raised (each time it is called).
    """
    pool = ThreadPoolExecutor(1, thread_name_prefix=name)
    future = pool.submit(fn, *args, **kwargs)
    pool.shutdown(wait=False)
    return future.result
