"""Time of the stack fills on one 1024² plane of a 5-plane stack (K = 2), one thread.

The learned stack model (``Inpainter.from_pretrained("stack")``'s fill) and the classical
``neighbours`` fill, through :func:`rnon_engine.inference.stack_context.prefill` (the 2-D
pass for pixels no neighbour knows is not timed): one 512² hole, then 200 holes of 8×8 px.
The planes are a smooth random texture shifted by one pixel per plane.

    OMP_NUM_THREADS=1 python benchmarks/stack_speed.py
"""

from __future__ import annotations

import time
import warnings

import cv2
import numpy as np
import torch

from rnon_engine import Inpainter
from rnon_engine.inference.stack_context import prefill, stack_filler


def main() -> None:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.random((1100, 1100)).astype(np.float32), (0, 0), 4)
    base = (base - base.min()) / (base.max() - base.min())
    stack = np.stack([base[z : z + 1024, z : z + 1024] for z in range(5)])
    big = np.zeros(stack.shape, bool)
    big[2, 256:768, 256:768] = True
    small = np.zeros(stack.shape, bool)
    for _ in range(200):
        y, x = rng.integers(0, 1016, 2)
        small[2, y : y + 8, x : x + 8] = True
    fills = {"stack": stack_filler(Inpainter.from_pretrained("stack", device="cpu")),
             "neighbours": None}
    for what, mask in (("one 512² hole", big), ("200 holes of 8×8", small)):
        for name, filler in fills.items():
            t = time.perf_counter()
            prefill(stack, mask, 2, filler=filler)
            print(f"{name:>10}, {what}: {time.perf_counter() - t:.2f} s", flush=True)


if __name__ == "__main__":
    main()
