"""Where one ``Inpainter.inpaint`` call spends its time (CPU time, one thread).

Wraps the parts of the inference code path with CPU-time counters
(``time.thread_time``: robust to other jobs on a shared machine) and runs one call on
issue 16's photograph (``bench_inference.make_photo_case``): stage 1 and stage 2 network
calls, the stage-2 band (boxes, compositing), window planning, blending, the owned-pixel
lookups, the intensity mapping, and the rest (batching, packing crops, Python overhead).

    python benchmarks/profile_inference.py --size 2048 --mask strokes
    python benchmarks/profile_inference.py --size 2048 --mask strokes --previous
    python benchmarks/profile_inference.py --size 4096 --mask spots --stage2 <optimize.safetensors>
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    import torch

    import rnon_engine.inference.classical as classical
    import rnon_engine.inference.inpainter as inpainter
    import rnon_engine.inference.ort_runner as ort_runner
    import rnon_engine.inference.plane_run as plane_run
    import rnon_engine.inference.tiling as tiling
    from bench_inference import METHOD_VARIANTS, PHOTO_KINDS, make_photo_case
    from rnon_engine.inference.intensity import IntensityMap

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--mask", choices=PHOTO_KINDS, default="strokes")
    ap.add_argument(
        "--previous", action="store_true", help="the settings before issue 16 (default-previous)"
    )
    ap.add_argument("--stage2", help="optimize-generator file instead of the packaged one")
    args = ap.parse_args()
    torch.set_num_threads(1)
    spent: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()

    def wrap(owner: object, name: str, label: str) -> None:
        func = getattr(owner, name)

        def timed(*a, **k):
            t = time.thread_time()
            try:
                return func(*a, **k)
            finally:
                spent[label] += time.thread_time() - t
                calls[label] += 1

        setattr(owner, name, timed)

    img, mask = make_photo_case(args.size, args.mask)
    kwargs = METHOD_VARIANTS["default-previous"][1] if args.previous else {}
    inp = inpainter.Inpainter.from_pretrained(
        "default", device="cpu", stage2=args.stage2, threads=1, **kwargs
    )
    # Nested parts are listed under the part that contains them (self time = the rest).
    wrap(inp.repair, "forward", "stage 1 network")
    wrap(inp.optimize, "forward", "stage 2 network")
    wrap(ort_runner.OrtRunner, "repair", "stage 1 network")  # backend "onnxruntime"
    wrap(ort_runner.OrtRunner, "optimize", "stage 2 network")
    wrap(inpainter, "OrtRunner", "ONNX Runtime sessions (cached export)")
    wrap(inpainter, "band_boxes", "stage 2 band boxes")
    wrap(classical, "guide_fill", "stage 2 guide (biharmonic fill)")
    wrap(inpainter, "plan_tiles", "planning (plan_tiles)")
    wrap(plane_run.Blender, "add", "blending (Blender.add)")
    wrap(plane_run.Blender, "flush", "blending write-back (Blender.flush)")
    wrap(tiling.TilePlan, "owned", "owned-pixel lookups")
    wrap(IntensityMap, "to_unit", "intensity mapping")
    wrap(IntensityMap, "from_unit", "intensity mapping")
    wrap(inpainter, "intensity_map", "intensity mapping")
    windows: list[int] = []
    t = time.thread_time()
    inp.inpaint(img, mask, progress=lambda d, n: windows.append(n))
    total = time.thread_time() - t
    # Blender.flush calls the write-back, which calls owned(): report exclusive times.
    print(
        f"{args.size}² {args.mask}, {100 * mask.mean():.2f} % holes, "
        f"{'previous settings' if args.previous else 'defaults'}, {windows[-1]} windows, "
        f"{total:.2f} s CPU"
    )
    print("| part | CPU (s) | share | calls |")
    print("|---|---|---|---|")
    for label, sec in spent.most_common():
        print(f"| {label} | {sec:.2f} | {100 * sec / total:.1f} % | {calls[label]} |")
    rest = total - sum(spent[k] for k in spent if k != "blending write-back (Blender.flush)")
    print(
        f"| the rest (batching, crops, compositing, Python) | {rest:.2f} | "
        f"{100 * rest / total:.1f} % | |"
    )


if __name__ == "__main__":
    main()
