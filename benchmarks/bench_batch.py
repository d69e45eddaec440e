"""rnon-batch on a large uint16 stack with sparse holes: wall time, planes/s, peak RSS, scaling.

Generates, plane by plane (never the whole stack in memory), a zarr v3 stack (default
4.3 GB: 256 planes of 2048×4096 uint16, chunks 1×1024×1024) and a full-shape uint8 mask
with a few small holes on one plane in 8, under ``--scratch``
(default ``$TMPDIR/rnon-bench-batch``; deleted afterwards unless ``--keep``). Then runs,
each as a subprocess ``python -m rnon_engine.batch.cli`` with a fresh output:

- the default model, single process (threads);
- the default model, ``--workers 1`` and ``--workers 2`` (LocalCluster);
- the classical method ``telea``, single process;
- with ``--onnx``: the model exported to ONNX (``python -m training.export``, into the
  scratch folder), ``--workers 1`` and ``--workers 2``: ONNX Runtime workers without torch.

RSS is sampled every 0.1 s over the whole process tree with psutil: the peak of the sum
(driver plus dask workers plus helpers such as multiprocessing's resource tracker), and
the peak of the driver and of each worker on its own. Every output is checked: the hole
planes' digest must be the same for every run of one model (the executor does not change
the pixels), and the pixels outside the mask must equal the input. Results go to
docs/benchmarks.md through benchmarks/_report.py (``--no-report``: print them only).

    python benchmarks/bench_batch.py              # the full 4.3 GB stack
    python benchmarks/bench_batch.py --planes 16 --height 1024 --width 1024 --no-report
    python benchmarks/bench_batch.py --onnx          # adds the ONNX Runtime worker rows
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

SCRATCH = Path(tempfile.gettempdir()) / "rnon-bench-batch"
CHUNK = 1024
RSS_LIMIT_GB = 2.0
ROLES = ("driver", "worker", "other")


def make_stack(root: Path, planes: int, h: int, w: int, every: int) -> tuple[Path, Path, list[int]]:
    """Write the stack and its mask one plane at a time; return their paths and hole planes."""
    import zarr

    root.mkdir(parents=True, exist_ok=True)
    chunks = (1, min(CHUNK, h), min(CHUNK, w))
    img = zarr.create_array(
        store=str(root / "stack.zarr"), shape=(planes, h, w), chunks=chunks, dtype="uint16"
    )
    msk = zarr.create_array(
        store=str(root / "mask.zarr"), shape=(planes, h, w), chunks=chunks, dtype="uint8"
    )
    rng = np.random.default_rng(0)
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    base = 1000 + 800 * np.sin(yy / 37.0) * np.cos(xx / 53.0)  # one float32 plane
    hole_planes = []
    for p in range(planes):
        plane = base + rng.normal(0, 60, size=(h, w)).astype(np.float32) + 10 * p
        img[p] = np.clip(plane, 0, 65535).astype(np.uint16)
        if p % every == 0:
            m = np.zeros((h, w), np.uint8)
            for _ in range(4):
                y, x = rng.integers(0, h - 40), rng.integers(0, w - 40)
                m[y : y + int(rng.integers(8, 40)), x : x + int(rng.integers(8, 40))] = 1
            msk[p] = m
            hole_planes.append(p)
    return root / "stack.zarr", root / "mask.zarr", hole_planes


@dataclass
class Run:
    """One rnon-batch run: wall time, exit status and peak RSS (bytes)."""

    name: str
    wall: float
    rc: int
    tree_peak: int
    driver_peak: int
    worker_peaks: list[int] = field(default_factory=list)
    other_peak: int = 0
    digest: str = ""
    vs_first: str = ""
    outside_ok: bool = False


def _role(pid: int, driver: int, cmdline: str) -> str:
    """``driver``, ``worker`` (a dask worker process) or ``other`` (resource tracker...)."""
    if pid == driver:
        return "driver"
    if "resource_tracker" in cmdline or "forkserver" in cmdline:
        return "other"
    return "worker" if "spawn_main" in cmdline else "other"


def run(name: str, args: list[str]) -> Run:
    """Run rnon-batch with ``args``, sampling the RSS of its process tree."""
    cmd = [sys.executable, "-m", "rnon_engine.batch.cli", *args, "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    peaks: dict[int, int] = {}
    cmdlines: dict[int, str] = {}  # the latest: a spawned child starts as a copy of its parent
    tree_peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal tree_peak
        try:
            parent = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while not stop.is_set():
            total = 0
            try:
                procs = [parent, *parent.children(recursive=True)]
            except psutil.Error:
                procs = []
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    cmdline = " ".join(p.cmdline())
                    if cmdline:  # empty once the process is exiting: keep the last one seen
                        cmdlines[p.pid] = cmdline
                except psutil.Error:
                    continue
                peaks[p.pid] = max(rss, peaks.get(p.pid, 0))
                total += rss
            tree_peak = max(tree_peak, total)
            time.sleep(0.1)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    rc = proc.wait()
    stop.set()
    th.join()
    wall = time.perf_counter() - t0
    roles = {pid: _role(pid, proc.pid, cmdlines.get(pid, "")) for pid in peaks}
    by_role = {r: [v for pid, v in peaks.items() if roles[pid] == r] for r in ROLES}
    other = by_role["other"]
    return Run(
        name,
        wall,
        rc,
        tree_peak,
        max(by_role["driver"], default=0),
        sorted(by_role["worker"], reverse=True),
        max(other, default=0),
    )


def check_output(r: Run, stack: Path, mask: Path, out: Path, hole_planes: list[int]) -> None:
    """Digest of the hole planes; pixels outside the mask equal to the input (hole planes
    and one plane without holes)."""
    import zarr

    if r.rc != 0:
        return
    src, m, res = (zarr.open_array(str(p), mode="r") for p in (stack, mask, out))
    h = hashlib.sha256()
    ok = True
    free = next((p for p in range(src.shape[0]) if p not in hole_planes), None)
    for p in [*hole_planes, *([free] if free is not None else [])]:
        a, b, keep = src[p], res[p], m[p] == 0
        ok &= bool(np.array_equal(a[keep], b[keep]))
        if p in hole_planes:
            h.update(np.ascontiguousarray(b).tobytes())
    r.digest, r.outside_ok = h.hexdigest()[:16], ok


def compare(ref: Path, out: Path, hole_planes: list[int]) -> str:
    """How the hole planes of ``out`` differ from those of ``ref`` (max |diff|, pixels)."""
    import zarr

    a, b = (zarr.open_array(str(p), mode="r") for p in (ref, out))
    worst, count, planes = 0, 0, []
    for p in hole_planes:
        d = np.abs(a[p].astype(np.int64) - b[p].astype(np.int64))
        if d.any():
            worst, count = max(worst, int(d.max())), count + int(np.count_nonzero(d))
            planes.append(p)
    if not planes:
        return "identical"
    return f"max |diff| {worst}, {count} px in planes {planes}"


def gb(n: int) -> str:
    return f"{n / 1e9:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--planes", type=int, default=256)
    ap.add_argument("--height", type=int, default=2048)
    ap.add_argument("--width", type=int, default=4096)
    ap.add_argument("--every", type=int, default=8, help="one plane in EVERY has holes")
    ap.add_argument("--model", default="default")
    ap.add_argument("--skip", default="", help="comma list of substrings of run names to skip")
    ap.add_argument("--scratch", type=Path, default=SCRATCH, help="where the data is written")
    ap.add_argument("--keep", action="store_true", help="keep the generated data")
    ap.add_argument(
        "--onnx", action="store_true", help="also run the model exported to ONNX (workers)"
    )
    ap.add_argument(
        "--no-report", action="store_true", help="print the section, do not write the docs"
    )
    a = ap.parse_args()
    if min(a.height, a.width) <= 40 or a.planes < 1 or a.every < 1:
        ap.error("need --height and --width > 40, --planes >= 1, --every >= 1")
    raw = a.planes * a.height * a.width * 2
    scratch = a.scratch.resolve()
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    # input + one output at a time (noise compresses little) + the mask, with a margin
    need = int(2.5 * raw)
    free = shutil.disk_usage(scratch).free
    if free < need:
        sys.exit(f"not enough disk under {scratch}: {gb(free)} GB free, need {gb(need)} GB")
    runs = {
        f"{a.model}, threads (1 process)": ["--model", a.model],
        f"{a.model}, --workers 1": ["--model", a.model, "--workers", "1"],
        f"{a.model}, --workers 2": ["--model", a.model, "--workers", "2"],
        "telea, threads (1 process)": ["--model", "telea"],
    }
    onnx_name = f"{a.model} as ONNX"
    if a.onnx:
        export = [sys.executable, "-m", "training.export", "--weights", a.model]
        export += ["--format", "onnx", "--out", str(scratch / "onnx")]
        subprocess.run(export, check=True, cwd=Path(__file__).resolve().parents[1])
        onnx_file = str(scratch / "onnx" / "rnon_repair.onnx")
        runs[f"{onnx_name}, --workers 1"] = ["--model", onnx_file, "--workers", "1"]
        runs[f"{onnx_name}, --workers 2"] = ["--model", onnx_file, "--workers", "2"]
    skip = {s.strip() for s in a.skip.split(",") if s.strip()}
    rows: list[Run] = []
    first: Path | None = None  # the first run of the model: later runs are compared with it
    try:
        t0 = time.perf_counter()
        stack, mask, hole_planes = make_stack(scratch, a.planes, a.height, a.width, a.every)
        gen_s = time.perf_counter() - t0
        print(f"stack: {gb(raw)} GB generated in {gen_s:.0f} s", flush=True)
        for i, (name, extra) in enumerate(runs.items()):
            if any(s in name for s in skip):
                continue
            out = scratch / f"out{i}.zarr"
            r = run(name, [str(stack), "--mask", str(mask), "-o", str(out), *extra])
            check_output(r, stack, mask, out, hole_planes)
            if name.startswith(f"{a.model},") and r.rc == 0:
                if first is None:
                    first = out
                else:
                    r.vs_first = compare(first, out, hole_planes)
            elif name.startswith(onnx_name) and r.rc == 0 and first is not None:
                r.vs_first = compare(first, out, hole_planes)
            print(
                f"{name}: {r.wall:.1f} s, rc {r.rc}, peak RSS sum {gb(r.tree_peak)} GB, driver "
                f"{gb(r.driver_peak)}, workers {[gb(w) for w in r.worker_peaks]}, other "
                f"{gb(r.other_peak)}; outside mask unchanged {r.outside_ok}, digest {r.digest}"
                f"{'; vs the first run: ' + r.vs_first if r.vs_first else ''}",
                flush=True,
            )
            rows.append(r)
            if out != first:
                shutil.rmtree(out, ignore_errors=True)
    finally:
        if not a.keep:
            shutil.rmtree(scratch, ignore_errors=True)

    full = raw >= 4e9
    label = (
        ""
        if full
        else f"\n**Small run** ({gb(raw)} GB, below the issue's 4 GB stack): it checks the "
        "script and shows the memory per process; it is not the benchmark. Run the command "
        "without `--planes`/`--height`/`--width` for the 4.3 GB figures.\n"
    )
    body = [
        f"Stack: {a.planes} × {a.height} × {a.width} uint16 ({gb(raw)} GB raw), zarr v3 chunks "
        f"1×{min(CHUNK, a.height)}×{min(CHUNK, a.width)}, full-shape uint8 mask with 4 small "
        f"holes (8–40 px) on {len(hole_planes)} planes (one in {a.every}); generated in "
        f"{gen_s:.0f} s. OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}.",
        label,
        "| run | wall time (s) | planes/s | hole planes/s | peak RSS sum (GB) | driver (GB) "
        "| each worker (GB) | under 2 GB | outside mask unchanged | exit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        workers = ", ".join(gb(w) for w in r.worker_peaks) or "–"
        body.append(
            f"| {r.name} | {r.wall:.1f} | {a.planes / r.wall:.2f} | "
            f"{len(hole_planes) / r.wall:.3f} | {gb(r.tree_peak)} | {gb(r.driver_peak)} | "
            f"{workers} | {'yes' if r.tree_peak < RSS_LIMIT_GB * 1e9 else '**no**'} | "
            f"{'yes' if r.outside_ok else '**no**'} | {r.rc} |"
        )
    w1 = next((r for r in rows if r.name == f"{a.model}, --workers 1"), None)
    w2 = next((r for r in rows if r.name == f"{a.model}, --workers 2"), None)
    if w1 and w2 and w1.rc == w2.rc == 0:
        body.append(
            f"\nScaling 1 → 2 workers: {w1.wall / w2.wall:.2f}× faster "
            f"({len(os.sched_getaffinity(0))} CPU cores available to the run, shared)."
        )
    same = {r.digest for r in rows if r.name.startswith(f"{a.model},") and r.rc == 0}
    if same:
        body.append(
            f"\nThe {a.model} runs' hole planes are "
            + ("identical across executors." if len(same) == 1 else "**not identical**:")
        )
        for r in rows:
            if r.vs_first and r.vs_first != "identical":
                body.append(f"- {r.name} vs the first {a.model} run: {r.vs_first}.")
        if len(same) > 1:
            body.append(
                "\nDask workers run torch with one thread each, the single process with "
                "the machine's threads: another float summation order can flip the rounding "
                "of a pixel by one grey level."
            )
    onnx_rows = [r for r in rows if r.name.startswith(onnx_name) and r.vs_first]
    for r in onnx_rows:
        body.append(f"\n{r.name} vs the first torch run of {a.model}: {r.vs_first}.")
    if onnx_rows:
        body.append(
            "ONNX workers run the exported graphs with ONNX Runtime and never import torch "
            "(docs/export.md)."
        )
    body.append(
        f"\nHole-free blocks ({a.every - 1} planes in {a.every}) are copied, not computed. "
        "Peak RSS sum: the largest sum over the process tree at one instant (0.1 s samples); "
        "driver and worker columns are each process's own peak. With `--workers` the "
        "driver does not load the model (it reads the weights' metadata for the provenance); "
        "each worker loads it once."
    )
    text = "\n".join(body)
    command = f"python benchmarks/bench_batch.py {' '.join(sys.argv[1:])}".strip()
    if a.no_report:
        print(f"\n{command}\n\n{text}")
    else:
        write_section("rnon-batch", text, command)


if __name__ == "__main__":
    main()
