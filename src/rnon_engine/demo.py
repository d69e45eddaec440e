"""Repair the bundled sample photograph and write a before/after PNG.

Usage::

    python -m rnon_engine.demo --out before_after.png [--method default|telea|ns|biharmonic]

The picture shows, side by side: the damaged photograph (mask pixels painted magenta), and
the repair (by default with the packaged default model, both stages).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["before_after", "main"]


def before_after(image: np.ndarray, mask: np.ndarray, repaired: np.ndarray) -> np.ndarray:
    """Side-by-side RGB uint8 picture: damaged (holes magenta) | 8 px gap | repaired."""
    damaged = image.copy()
    damaged[mask] = (255, 0, 255)
    gap = np.full((image.shape[0], 8, 3), 255, dtype=np.uint8)
    return np.concatenate([damaged, gap, repaired], axis=1)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m rnon_engine.demo``."""
    from rnon_engine.errors import RnonError
    from rnon_engine.inference.inpainter import Inpainter, list_methods
    from rnon_engine.samples import damaged_photo

    parser = argparse.ArgumentParser(prog="python -m rnon_engine.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("before_after.png"))
    parser.add_argument("--method", default="default", help=f"{list_methods()} or a path")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    try:
        inpainter = Inpainter.from_pretrained(args.method, device=args.device)
        image, mask = damaged_photo()
        start = time.perf_counter()
        repaired = inpainter.inpaint(image, mask)
        seconds = time.perf_counter() - start
    except RnonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import imageio.v3 as iio

    args.out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(args.out, before_after(image, mask, repaired))
    print(
        f"repaired {int(mask.sum())} pixels of a {image.shape[1]}x{image.shape[0]} photo with "
        f"{inpainter.name} in {seconds:.1f} s; wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
