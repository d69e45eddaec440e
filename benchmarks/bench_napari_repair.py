"""How long napari's *Repair* button takes on issue 16's photograph (run by hand, under Xvfb).

    xvfb-run -a -s "-screen 0 1400x900x24" python benchmarks/bench_napari_repair.py \
        --size 2048 --methods "RNON (repair + optimise)" Auto "Telea (OpenCV)"

One process: a napari viewer (not shown), the Inpaint widget, issue 16's photograph
(``bench_inference.make_photo_case``, spots and strokes) as an image layer and its damage
as the repair mask; then for each method *Repair* is clicked twice (``widget.run()``) and
the wall time and the process's CPU time (all threads: on a shared machine the figure to
compare) from the click until the result layer is there are printed: the first click
loads the model (and opens the ONNX Runtime sessions), the second reuses it, as a user's
next click does. Torch / OpenMP threads: ``--threads``. ``--settle S``: after choosing a
method, napari runs on for S seconds before the first click, as while a user paints the
mask (the widget builds the method's engine in the background meanwhile); 0, the default,
clicks at once.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--methods", nargs="+", default=["RNON (repair + optimise)"])
    parser.add_argument("--kinds", nargs="+", default=["spots", "strokes"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clicks", type=int, default=2)
    parser.add_argument("--settle", type=float, default=0.0, help="seconds before the first click")
    args = parser.parse_args()

    import napari
    import torch
    from qtpy.QtWidgets import QApplication

    from bench_inference import make_photo_case
    from napari_rnon._widget import InpaintWidget

    torch.set_num_threads(args.threads)
    viewer = napari.Viewer(show=False)
    widget = InpaintWidget(viewer)
    load = os.getloadavg()
    print(
        f"{args.size}² photograph, {args.threads} thread(s), settle {args.settle:g} s, "
        f"load {load[0]:.1f}",
        flush=True,
    )
    print("| mask | method | click | wall (s) | CPU (s) |\n|---|---|---|---|---|", flush=True)
    for kind in args.kinds:
        img, mask = make_photo_case(args.size, kind)
        layer = viewer.add_image(img, name=kind, rgb=True)
        widget._image.value = layer
        widget.new_mask().data[:] = mask
        for method in args.methods:
            widget._method.value = method
            settled = time.perf_counter() + args.settle
            while time.perf_counter() < settled:
                QApplication.processEvents()
                time.sleep(0.01)
            for click in range(1, args.clicks + 1):
                t, cpu = time.perf_counter(), time.process_time()
                if widget.run() is None:
                    print(f"{kind} {method}: the widget refused the run", flush=True)
                    return 1
                while widget._worker is not None:
                    QApplication.processEvents()
                    time.sleep(0.005)
                wall, cpu = time.perf_counter() - t, time.process_time() - cpu
                print(f"| {kind} | {method} | {click} | {wall:.2f} | {cpu:.2f} |", flush=True)
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
