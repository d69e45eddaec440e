#!/usr/bin/env bash
# The GPU checks, in one short run (under 8 minutes on one recent GPU), so that the moment
# a CUDA machine is at hand its figures land in docs/benchmarks.md:
#
#   1. the CUDA tests (tests/test_networks.py, the cases parametrised with "cuda");
#   2. inference timings on issue 16's 4096² photograph (spots, strokes): the default
#      model on CUDA in float32 and under autocast (float16, bfloat16), with the error of
#      each against float32 (section "gpu-inference" of docs/benchmarks.md);
#   3. benchmarks/bench_training.py with the `paper` configuration only (its "Training
#      throughput" section; the cpu-lite rows are skipped with --crops '').
#
# Usage, from the repository root, with the project installed (pip install -e .[dev]):
#   bash benchmarks/gpu_check.sh            # PYTHON=... to pick an interpreter
# Each step has its own time limit; a failed step is reported and the next one runs.
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: torch sees no CUDA device here; nothing to do" >&2
    exit 2
fi
"$PY" -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"

echo "== 1/3 CUDA tests"
timeout 120 "$PY" -m pytest tests/test_networks.py -q -k cuda -p no:cacheprovider || status=1

echo "== 2/3 inference on CUDA: float32 vs autocast"
timeout 240 "$PY" - <<'EOF' || status=1
import sys
import time

import numpy as np
import torch

sys.path.insert(0, "benchmarks")
from _report import write_section
from bench_inference import PHOTO_KINDS, make_photo_case

from rnon_engine.inference.inpainter import Inpainter

inp = Inpainter.from_pretrained("default", device="cuda")
rows = []
for kind in PHOTO_KINDS:
    img, mask = make_photo_case(4096, kind)
    ref = None
    for label, dtype in (("float32", None), ("autocast float16", torch.float16),
                         ("autocast bfloat16", torch.bfloat16)):
        def call():
            if dtype is None:
                return inp.inpaint(img, mask)
            with torch.autocast("cuda", dtype=dtype):
                return inp.inpaint(img, mask)
        call()  # warm-up (cuDNN autotuning, allocator)
        torch.cuda.synchronize()
        times = []
        for _ in range(3):
            t = time.perf_counter()
            out = call()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        if ref is None:
            ref = out
        diff = np.abs(out.astype(np.int16) - ref.astype(np.int16))[mask]
        rows.append((kind, label, min(times), float(np.median(times)), int(diff.max()),
                     float((diff > 1).mean())))
        print(rows[-1], flush=True)
lines = [
    "Issue 16's 4096² photograph (benchmarks/bench_inference.py `make_photo_case`), the "
    "default model (both stages, band) on CUDA; best and median of 3 calls after a "
    "warm-up; error in grey levels over the hole pixels against float32.",
    "",
    "| mask | precision | best (s) | median (s) | max error | hole px off by > 1 |",
    "|---|---|---|---|---|---|",
]
for kind, label, best, med, err, frac in rows:
    lines.append(f"| {kind} | {label} | {best:.2f} | {med:.2f} | {err} | {100 * frac:.2f} % |")
write_section("gpu-inference", "\n".join(lines), "bash benchmarks/gpu_check.sh")
EOF

echo "== 3/3 training throughput, paper configuration"
timeout 240 "$PY" benchmarks/bench_training.py --crops '' --warmup 2 --steps 3 \
    || status=1

echo "gpu_check: done (status $status); see docs/benchmarks.md"
exit $status
