"""How long the Inpaint widget takes to open in a fresh napari (run by hand, under Xvfb).

    xvfb-run -a -s "-screen 0 1400x900x24" python benchmarks/bench_napari_open.py [--runs 3]

Each run is a new Python process: it starts napari (not timed), then times importing
``napari_rnon._widget`` and building ``InpaintWidget(viewer)``, which is what napari does
when the user opens *Plugins > RNON Inpainting > Inpaint*. torch is not imported by then
in a fresh process, so its import cost shows here if the widget waits for it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

CODE = """
import time
import napari
viewer = napari.Viewer(show=False)
t0 = time.perf_counter()
from napari_rnon._widget import InpaintWidget
widget = InpaintWidget(viewer)
t1 = time.perf_counter()
print(t1 - t0)
"""


def main() -> int:
    """Print the time to open the widget in each run and their median."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    times = []
    for _ in range(args.runs):
        out = subprocess.run(
            [sys.executable, "-c", CODE], capture_output=True, text=True, check=True
        )
        times.append(float(out.stdout.strip().splitlines()[-1]))
        print(f"open the Inpaint widget: {times[-1]:.2f} s")
    print(f"median of {len(times)}: {statistics.median(times):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
