"""Forward time and achieved GFLOP/s of the two RNON generators, next to a plain big conv.

Measures, on the CPU (and on CUDA when present), in ``torch.inference_mode`` and eval mode,
batch 1:

* the practical ceiling: a 256->256-channel 3x3 convolution on a 128x128 map (GFLOP/s);
* ``rnon-repair`` (paper: width 1, depth 8) and ``rnon-optimize`` (paper: 16 blocks, 32
  channels) at 256², 512², 1024²: FLOPs (``torch.utils.flop_counter``, counted on the meta
  device), median and best time, GFLOP/s and the share of the ceiling;
* for ``rnon-optimize`` at one size, where its time goes (profiler, by operator), and
  variants that compute the same thing: channels_last, 1 vs 2 threads, TorchScript
  freeze, ``torch.compile`` (``--compile``, slow to build), bf16 autocast (not exact;
  reported only).

Variants are timed in interleaved rounds (A B C A B C ...) so that load from other users of a
shared CPU hits them alike; the best time of the rounds is the least disturbed one.

Usage::

    python benchmarks/bench_networks.py                 # full run, writes docs/benchmarks.md
    python benchmarks/bench_networks.py --sizes 256 --no-write   # quick look
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_section  # noqa: E402
from rnon_engine import create_model  # noqa: E402

GENERATORS = ("rnon-repair", "rnon-optimize")

# What the measurements mean; written by hand from the runs recorded above (see the tables).
FINDINGS = """
### Findings (run of 2026-11-25, CPU shared: load average about 5 on 2 cores, so noisy)

- **Why stage 2 costs several times stage 1: FLOPs.** At 256² `rnon-optimize` needs 87.0
  GFLOP against 19.2 for the whole `rnon-repair` (4.5x): the U-Net runs its wide 512-channel
  layers at 1/16 to 1/256 resolution, while stage 2 runs 16 blocks of four 3×3 32→32 convs
  plus a 1×1 128→32 fuse at full resolution (5.4 GFLOP per block at 256²). Measured time
  ratio: 2.9x at 256², 3.6x at 512², 4.7x at 1024² (best runs).
- Dilation is not a slow path: each 3×3 branch does the same FLOPs whatever its dilation, and
  a per-branch probe timed d = 1, 2, 4, 8 alike (41 / 48 / 44 / 44 ms in channels_last,
  256², loaded machine).
- In NCHW, oneDNN reorders every activation to its blocked layout and back around each thin
  32-channel conv; the 128-channel `cat`, the ReLU and the residual add are further passes
  over full-resolution maps (`cat` alone is about a quarter of the self time in the
  profile above).
- **Done: channels_last.** `OptimizeGenerator.forward` now converts its input to
  channels_last (weights, state_dict keys and results unchanged: max relative error of the
  trunk 1.9e-6, float rounding); 1.2-1.5x in interleaved runs on this machine.
- Not possible exactly: batching the four branches into one conv. They differ in dilation,
  so one (grouped) conv can only do it with a dense 17×17 kernel (32x the multiply-adds) or an
  im2col over the 33 distinct taps (3.7x); the 1×1 fuse cannot be folded into the branches
  because of the ReLU between them.
- Threads: on this loaded machine one thread beat two by about 2x (OpenMP threads waiting for
  a core held by someone else); on an idle machine two threads should win. Measure again
  before changing the default; the engine keeps torch's default.
- `torch.compile` (inductor, `freezing=True`) works offline here (gcc present): 1.95x over
  NCHW eager, same results (1.9e-6), but it builds for 16-75 s per input shape, so it
  suits a long batch job at one tile size, not interactive napari use. Not enabled.
- TorchScript `trace` + `freeze` + `optimize_for_inference` (deprecated) took 49 s to build
  and was slower (0.84x) in an earlier run of this script (`--torchscript`).
- bf16 autocast (the CPU has AVX512-BF16): 1.8x, but a relative error of 2e-2 in the trunk;
  reported only, float32 is kept.
- Not measured here: CUDA (no GPU on this machine; the script times it when one is present).
"""


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_fn(fn: Callable[[], object], device: str, repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - t0)
    return out


def interleaved(
    fns: dict[str, Callable[[], object]], device: str, rounds: int
) -> dict[str, list[float]]:
    """Time every function once per round, round after round (after one warm-up each)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            times[key] += time_fn(fn, device, 1, warmup=0)
    return times


def load_average() -> str:
    try:
        return " / ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def model_inputs(name: str, size: int, device: str | torch.device) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, size, size, generator=g).to(device)
    if name == "rnon-repair":
        mask = (torch.rand(1, 1, size, size, generator=g) > 0.25).float().to(device)
        return image, mask
    return (image,)


def count_flops(name: str, size: int) -> int:
    """FLOPs of one forward pass (2 per multiply-add), counted on the meta device."""
    with torch.device("meta"):
        model = create_model(name).eval()
        inputs = model_inputs(name, size, "meta")
        with FlopCounterMode(display=False) as counter:
            model(*inputs)
    return counter.get_total_flops()


def ceiling(device: str, rounds: int) -> tuple[float, float]:
    """GFLOP/s of a 256->256 3x3 conv on 128x128 (best, median), the practical ceiling."""
    conv = nn.Conv2d(256, 256, 3, padding=1).to(device).eval()
    x = torch.rand(1, 256, 128, 128, device=device)
    flops = 2 * 256 * 256 * 9 * 128 * 128
    with torch.inference_mode():
        ts = time_fn(lambda: conv(x), device, max(rounds, 3))
    return flops / min(ts) / 1e9, flops / statistics.median(ts) / 1e9


def generator_table(device: str, sizes: list[int], rounds: int, ceil: float) -> list[str]:
    rows = [
        "| model | size | GFLOP | median ms | best ms | runs | GFLOP/s (best) | of ceiling |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in GENERATORS:
        torch.manual_seed(0)
        model = create_model(name).to(device).eval()
        for size in sizes:
            flops = count_flops(name, size)
            inputs = model_inputs(name, size, device)
            # 1024² runs take a minute each on 2 CPU cores: fewer repeats there.
            reps = max(1, round(rounds * (256 / size) ** 2)) if device == "cpu" else rounds
            reps = max(reps, 1 if size >= 1024 else 2)
            warm = 0 if size >= 1024 and device == "cpu" else 1  # a minute a run: no warm-up
            with torch.inference_mode():
                ts = time_fn(lambda m=model, i=inputs: m(*i), device, reps, warmup=warm)
            best, med = min(ts), statistics.median(ts)
            gfs = flops / best / 1e9
            rows.append(
                f"| {name} | {size}² | {flops / 1e9:.1f} | {med * 1e3:.0f} | {best * 1e3:.0f} | "
                f"{reps} | {gfs:.1f} | {gfs / ceil:.0%} |"
            )
            print(rows[-1], flush=True)
    return rows


def op_breakdown(size: int) -> list[str]:
    """Where rnon-optimize's CPU time goes, by operator (one profiled forward)."""
    from torch.profiler import ProfilerActivity, profile

    model = create_model("rnon-optimize").eval()
    (x,) = model_inputs("rnon-optimize", size, "cpu")
    with torch.inference_mode():
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(x)
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    # self time, so that nested ops (conv2d -> convolution -> mkldnn_convolution) count once
    total = sum(e.self_cpu_time_total for e in events)
    rows = ["| operator (self time) | ms | share |", "|---|---|---|"]
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:6]:
        ms = e.self_cpu_time_total / 1e3
        rows.append(f"| `{e.key}` | {ms:.0f} | {e.self_cpu_time_total / total:.0%} |")
    return rows


def trunk_rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


class _Skip(Exception):
    pass


def optimize_variants(
    size: int, rounds: int, use_compile: bool, use_torchscript: bool
) -> tuple[list[str], list[str]]:
    """Same-output variants of rnon-optimize at ``size``² on the CPU, timed interleaved.

    The comparison is on the trunk (head and residual blocks, before the zero-initialised
    tail), whose activations are large at init, so the error is relative to its maximum.
    """
    torch.manual_seed(0)
    model = create_model("rnon-optimize").eval()
    (x,) = model_inputs("rnon-optimize", size, "cpu")
    xcl = x.contiguous(memory_format=torch.channels_last)
    model_cl = create_model("rnon-optimize").eval()
    model_cl.load_state_dict(model.state_dict())
    model_cl = model_cl.to(memory_format=torch.channels_last)

    def trunk(m: nn.Module, inp: torch.Tensor) -> torch.Tensor:
        return m.blocks(m.head(inp))

    fns: dict[str, Callable[[], object]] = {}
    notes: list[str] = []
    errors: dict[str, str] = {}
    threads = torch.get_num_threads()
    with torch.inference_mode():
        ref = trunk(model, x)
        errors["eager, NCHW (reference)"] = "0"
        fns["eager, NCHW (reference)"] = lambda: trunk(model, x)
        errors["channels_last"] = f"{trunk_rel_error(trunk(model_cl, xcl), ref):.1e}"
        fns["channels_last"] = lambda: trunk(model_cl, xcl)

        def one_thread(fn: Callable[[], object]) -> Callable[[], object]:
            def run() -> object:
                torch.set_num_threads(1)
                try:
                    return fn()
                finally:
                    torch.set_num_threads(threads)

            return run

        if threads > 1:
            errors["channels_last, 1 thread"] = errors["channels_last"]
            fns["channels_last, 1 thread"] = one_thread(lambda: trunk(model_cl, xcl))

        def bf16() -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return trunk(model_cl, xcl)

        errors["bf16 autocast, channels_last (not exact)"] = f"{trunk_rel_error(bf16(), ref):.1e}"
        fns["bf16 autocast, channels_last (not exact)"] = bf16

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")

        class Trunk(nn.Module):
            def __init__(self, m: nn.Module) -> None:
                super().__init__()
                self.head, self.blocks = m.head, m.blocks

            def forward(self, inp: torch.Tensor) -> torch.Tensor:
                return self.blocks(self.head(inp))

        try:
            if not use_torchscript:
                raise _Skip
            t0 = time.perf_counter()
            frozen = torch.jit.optimize_for_inference(
                torch.jit.freeze(torch.jit.trace(Trunk(model).eval(), x))
            )
            frozen(x)
            notes.append(f"TorchScript trace+freeze built in {time.perf_counter() - t0:.0f} s.")
            errors["TorchScript freeze + optimize_for_inference"] = (
                f"{trunk_rel_error(frozen(x), ref):.1e}"
            )
            fns["TorchScript freeze + optimize_for_inference"] = lambda: frozen(x)
        except _Skip:
            pass
        except Exception as exc:  # deprecated path; report and go on
            notes.append(f"TorchScript freeze failed: {type(exc).__name__}: {exc}")
        if use_compile:
            try:
                import torch._inductor.config as inductor_config

                inductor_config.freezing = True
                compiled = torch.compile(Trunk(model).eval())
                t0 = time.perf_counter()
                out = compiled(x)
                notes.append(
                    f"torch.compile (inductor, freezing=True) built in "
                    f"{time.perf_counter() - t0:.0f} s for this one input shape."
                )
                errors["torch.compile (inductor, freezing)"] = f"{trunk_rel_error(out, ref):.1e}"
                fns["torch.compile (inductor, freezing)"] = lambda: compiled(x)
            except Exception as exc:
                notes.append(f"torch.compile failed: {type(exc).__name__}: {exc}")

    flops = count_flops("rnon-optimize", size) - 2 * 32 * 3 * 9 * size * size  # minus tail
    with torch.inference_mode():
        times = interleaved(fns, "cpu", rounds)
    base = min(times["eager, NCHW (reference)"])
    rows = [
        f"| variant ({size}², trunk) | best ms | median ms | GFLOP/s | speed-up | max rel. error |",
        "|---|---|---|---|---|---|",
    ]
    for key, ts in times.items():
        best = min(ts)
        rows.append(
            f"| {key} | {best * 1e3:.0f} | {statistics.median(ts) * 1e3:.0f} | "
            f"{flops / best / 1e9:.1f} | {base / best:.2f}x | {errors[key]} |"
        )
        print(rows[-1], flush=True)
    return rows, notes


#: (model, batch, side) of the calls inference makes on the 4096² photograph of issue 16:
#: packed small-hole windows (64-80 px, batched), blended windows over thin strokes
#: (144 px, batched), a 512 px tile; stage 2 on the same shapes.
INFERENCE_SHAPES = [
    ("repair", 40, 64),
    ("repair", 12, 144),
    ("repair", 1, 512),
    ("optimize", 40, 64),
    ("optimize", 12, 144),
    ("optimize", 1, 512),
]


def inference_table(rounds: int) -> list[str]:
    """The shipped default model at the shapes inference uses, one thread, vs the ceiling."""
    from rnon_engine.inference.weights_source import resolve_weights
    from rnon_engine.nn.weights import load_model

    src = resolve_weights("default", None)
    models = {
        "repair": load_model(src.repair, torch.device("cpu")).eval(),
        "optimize": load_model(src.optimize, torch.device("cpu")).eval(),
    }
    ceil, _ = ceiling("cpu", rounds)
    rows = [
        f"Shipped default model, CPU, {torch.get_num_threads()} thread(s), float32, "
        "`torch.inference_mode`; the repair network computes the windows unpadded "
        f"(`pad_to=16`) as inference does. Ceiling in the same run: **{ceil:.1f} GFLOP/s**.",
        "",
        "| network | batch × side | GFLOP | best ms | µs / px | GFLOP/s | of ceiling |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, n, side in INFERENCE_SHAPES:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(n, 3, side, side, generator=g)
        if kind == "repair":
            m = (torch.rand(n, 1, side, side, generator=g) > 0.1).float()

            def call(x=x, m=m):
                return models["repair"](x, m, pad_to=16)
        elif getattr(models["optimize"].config, "guided", False):
            # A guided stage 2 also reads the guide fill and the mask.
            guide = torch.rand(n, 3, side, side, generator=g)
            valid = (torch.rand(n, 1, side, side, generator=g) > 0.1).float()

            def call(x=x, guide=guide, valid=valid):
                return models["optimize"](x, guide, valid)
        else:

            def call(x=x):
                return models["optimize"](x)

        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            call()
        flops = counter.get_total_flops()
        with torch.inference_mode():
            best = min(time_fn(call, "cpu", rounds))
        gfs = flops / best / 1e9
        rows.append(
            f"| {kind} | {n} × {side}² | {flops / 1e9:.2f} | {best * 1e3:.0f} | "
            f"{best / (n * side * side) * 1e6:.2f} | {gfs:.1f} | {gfs / ceil:.0%} |"
        )
        print(rows[-1], flush=True)
    return rows


#: (network, batch, window side, side of the holes' box): issue 16's spots windows (a
#: 24 px box of holes in 64 px windows; stage 2 reads the box plus its 10 px halo) and
#: windows whose holes fill them (strokes, tiles).
ONNX_SHAPES = [
    ("repair", 40, 64, 24),
    ("repair", 12, 144, 144),
    ("repair", 1, 512, 512),
    ("optimize", 40, 44, 24),
    ("optimize", 12, 144, 144),
    ("optimize", 1, 512, 512),
]


def _ort_session(path: str, profile: str | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def onnx_ceiling(folder: Path, rounds: int) -> float:
    """GFLOP/s of the same 256->256 3x3 conv on 128x128 under ONNX Runtime, one thread."""
    conv = nn.Conv2d(256, 256, 3, padding=1).eval()
    x = torch.rand(1, 256, 128, 128)
    path = folder / "ceiling.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(conv, (x,), str(path), dynamo=False, input_names=["x"])
    sess = _ort_session(str(path))
    feeds = {"x": x.numpy()}
    ts = time_fn(lambda: sess.run(None, feeds), "cpu", max(rounds, 3))
    return 2 * 256 * 256 * 9 * 128 * 128 / min(ts) / 1e9


def _onnx_case(
    kind: str, n: int, side: int, box_side: int
) -> tuple[bool, tuple[torch.Tensor, ...], list[str]]:
    """One of :data:`ONNX_SHAPES`' inputs: whether the box graph runs, its arguments, names.

    A square box of holes of side ``box_side`` in the middle of ``n`` windows of ``side``;
    the box graph where the inpainter takes it (holes in at most ``BOX_SHARE`` of the input).
    """
    from rnon_engine.inference.onnx_model import BOX_SHARE

    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, side, side, generator=g)
    lo = (side - box_side) // 2
    box = torch.tensor([lo, lo + box_side, lo, lo + box_side])
    holes = torch.zeros(n, 1, side, side)
    holes[..., lo : lo + box_side, lo : lo + box_side] = 1
    boxed = box_side * box_side <= BOX_SHARE * side * side
    if kind == "repair":
        args: tuple[torch.Tensor, ...] = (x, holes, torch.zeros(8), box)
        names = ["image", "mask", "pad", "box"]
    else:
        args = (x, torch.rand(n, 3, side, side, generator=g), 1 - holes, box)
        names = ["image", "guide", "valid", "box"]
    if not boxed:
        args, names = args[:-1], names[:-1]
    return boxed, args, names


def _onnx_measure(
    graph: nn.Module,
    path: Path,
    args: tuple[torch.Tensor, ...],
    names: list[str],
    rounds: int,
    profile: Path,
) -> tuple[float, float, float]:
    """``graph``'s convolution FLOPs, and seconds per run of ``path``: whole run, Conv kernels.

    The FLOPs are counted by torch on ``graph``; the times are ONNX Runtime's profiled runs
    of the pre-optimised ``path`` (one thread) after two warm-up runs.
    """
    import json

    from rnon_engine.inference.ort_runner import _preoptimized

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        graph(*args)
    feeds = {k: v.numpy() for k, v in zip(names, args, strict=True)}
    sess = _ort_session(str(_preoptimized(path, fresh=True)), str(profile))
    for _ in range(2):  # warm-up (first-run allocations)
        sess.run(None, feeds)
    for _ in range(rounds):
        sess.run(None, feeds)
    events = json.load(open(sess.end_profiling()))
    conv_us = run_us = 0.0
    runs = 0
    for ev in events:
        if ev.get("cat") == "Node" and ev["name"].endswith("_kernel_time"):
            if ev["args"].get("op_name") in ("Conv", "FusedConv"):
                conv_us += ev["dur"]
        elif ev.get("cat") == "Session" and ev["name"] == "model_run":
            run_us += ev["dur"]
            runs += 1
    return counter.get_total_flops(), run_us / runs / 1e6, conv_us / runs / 1e6


def onnx_inference_table(rounds: int) -> list[str]:
    """The shipped model's graphs as the inpainter runs them (ONNX Runtime), one thread.

    The FLOPs are the convolutions the graph computes (counted by torch on the export
    wrappers, the holes' box included); the convolutions' time is the sum of ONNX
    Runtime's profiled Conv kernels, the whole time the profiled runs.
    """
    import tempfile

    from rnon_engine.export.graphs import SMALL_WINDOW_LEVELS, OptimizeGraph, RepairGraph
    from rnon_engine.export.onnx_export import export_graphs, load_generators

    repair, optimize, _ = load_generators("default")
    graphs = {
        "repair": RepairGraph(repair.eval(), levels=SMALL_WINDOW_LEVELS).eval(),
        "optimize": OptimizeGraph(optimize.eval()).eval(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = export_graphs(repair, optimize, folder)
        files = {
            ("repair", False): paths["repair_small"],
            ("repair", True): paths["repair_box"],
            ("optimize", False): paths["optimize"],
            ("optimize", True): paths["optimize_box"],
        }
        ceil = onnx_ceiling(folder, rounds)
        rows = [
            "Shipped default model, the graphs the inpainter runs (`rnon_repair_box.onnx` and "
            "`rnon_optimize_box.onnx` where the holes' box is at most half of the input, "
            "else `rnon_repair_small.onnx` and `rnon_optimize.onnx`; pre-optimised) under "
            "ONNX Runtime, one thread. *Conv layers*: the convolutions' FLOPs over the "
            "time of ONNX Runtime's Conv kernels (its profiler); *whole graph*: the same "
            "FLOPs over the whole run (the masks, push-pull fill, joins, slices and layout "
            "changes around the convolutions). Ceiling in the same run: the plain 256→256 "
            f"3×3 convolution on 128² under ONNX Runtime, **{ceil:.1f} GFLOP/s**.",
            "",
            "| network | batch × side (holes' box) | conv GFLOP | whole ms | conv ms | "
            "conv layers GFLOP/s | of ceiling | whole graph GFLOP/s | of ceiling |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for kind, n, side, box_side in ONNX_SHAPES:
            boxed, args, names = _onnx_case(kind, n, side, box_side)
            flops, run_s, conv_s = _onnx_measure(
                graphs[kind], files[kind, boxed], args, names, rounds, folder / f"prof-{kind}"
            )
            layers, whole = flops / conv_s / 1e9, flops / run_s / 1e9
            rows.append(
                f"| {kind} | {n} × {side}² ({box_side}²) | {flops / 1e9:.2f} | "
                f"{run_s * 1e3:.1f} | {conv_s * 1e3:.1f} | {layers:.1f} | {layers / ceil:.0%} | "
                f"{whole:.1f} | {whole / ceil:.0%} |"
            )
            print(rows[-1], flush=True)
    return rows


def parse_design(text: str) -> tuple[int, tuple[int, ...]]:
    """``"CHANNELS:D,D,..."`` (a stage-2 design of :func:`onnx_stage2_designs`) as numbers."""
    try:
        channels, dilations = text.split(":")
        parsed = int(channels), tuple(int(d) for d in dilations.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a stage-2 design is CHANNELS:DILATIONS such as 16:2,8, got {text!r}"
        ) from None
    if parsed[0] < 1 or min(parsed[1]) < 1:
        raise argparse.ArgumentTypeError(f"channels and dilations must be >= 1, got {text!r}")
    return parsed


def onnx_stage2_designs(rounds: int, designs: list[tuple[int, tuple[int, ...]]]) -> list[str]:
    """Other widths and dilations of the shipped stage 2, timed as the inpainter runs it.

    Each design is the shipped stage 2's configuration with ``channels`` trunk channels
    and one branch per dilation, randomly initialised (times and FLOPs depend on the
    shapes only; the tail gets small random weights so that no output is a constant),
    exported and measured like :func:`onnx_inference_table`'s ``optimize`` rows, in the
    same run as the shipped one and the ceiling.
    """
    import dataclasses
    import tempfile

    from rnon_engine.export.graphs import OptimizeGraph
    from rnon_engine.export.onnx_export import export_graphs, load_generators
    from rnon_engine.nn.networks.optimize import OptimizeGenerator

    repair, shipped, _ = load_generators("default")
    config = shipped.config
    nets: list[tuple[str, nn.Module]] = [
        (f"shipped: {config.channels}:{','.join(map(str, config.dilations))}", shipped.eval())
    ]
    for channels, dilations in designs:
        torch.manual_seed(0)
        width = config.width * channels / config.channels
        net = OptimizeGenerator(
            dataclasses.replace(config, width=width, dilations=dilations)
        ).eval()
        with torch.no_grad():
            net.tail.weight.normal_(0.0, 0.01)
        nets.append((f"{channels}:{','.join(map(str, dilations))}", net))
    shapes = [s for s in ONNX_SHAPES if s[0] == "optimize"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ceil = onnx_ceiling(folder, rounds)
        rows = [
            "The shipped stage 2 and other designs of it (*channels:dilations*: trunk "
            "channels, one dilated 3×3 branch per dilation; randomly initialised, the rest "
            "of the shipped configuration kept: receptive radius "
            f"{config.halo} px for a largest dilation of {max(config.dilations)}), "
            "exported and run as the inpainter runs stage 2 (ONNX Runtime, one thread; "
            "columns as in *bench_networks-onnx*). Ceiling in the same run: "
            f"**{ceil:.1f} GFLOP/s**.",
            "",
            "| design | batch × side (holes' box) | conv GFLOP | whole ms | conv ms | "
            "conv layers of ceiling | whole graph of ceiling |",
            "|---|---|---|---|---|---|---|",
        ]
        for i, (label, net) in enumerate(nets):
            paths = export_graphs(repair, net, folder / f"design-{i}")
            graph = OptimizeGraph(net).eval()
            for kind, n, side, box_side in shapes:
                boxed, args, names = _onnx_case(kind, n, side, box_side)
                path = paths["optimize_box" if boxed else "optimize"]
                flops, run_s, conv_s = _onnx_measure(
                    graph, path, args, names, rounds, folder / f"prof-{i}"
                )
                rows.append(
                    f"| {label} | {n} × {side}² ({box_side}²) | {flops / 1e9:.2f} | "
                    f"{run_s * 1e3:.1f} | {conv_s * 1e3:.1f} | "
                    f"{flops / conv_s / 1e9 / ceil:.0%} | {flops / run_s / 1e9 / ceil:.0%} |"
                )
                print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--rounds", type=int, default=3, help="timed runs at 256² (fewer above)")
    parser.add_argument("--variant-size", type=int, default=256)
    parser.add_argument("--compile", action="store_true", help="also try torch.compile (slow)")
    parser.add_argument("--torchscript", action="store_true", help="also try jit.freeze")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--inference",
        action="store_true",
        help="only the shipped model at the window shapes inference uses (own section)",
    )
    parser.add_argument(
        "--onnx",
        action="store_true",
        help="with --inference: the graphs the inpainter runs, under ONNX Runtime (own section)",
    )
    parser.add_argument(
        "--stage2-designs",
        type=parse_design,
        nargs="+",
        metavar="CHANNELS:DILATIONS",
        help="with --inference --onnx: time these stage-2 designs (e.g. 16:2,8) beside the "
        "shipped one instead (own section)",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.stage2_designs and not (args.inference and args.onnx):
        parser.error("--stage2-designs goes with --inference --onnx")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.inference:
        load_before = load_average()
        if args.stage2_designs:
            section = "bench_networks-stage2-designs"
            rows = onnx_stage2_designs(max(args.rounds, 5), args.stage2_designs)
        elif args.onnx:
            section, rows = "bench_networks-onnx", onnx_inference_table(max(args.rounds, 5))
        else:
            section, rows = "bench_networks-inference", inference_table(args.rounds)
        rows += ["", f"Load average (1/5/15 min) before: {load_before}; after: {load_average()}."]
        if not args.no_write:
            write_section(
                section,
                "\n".join(rows),
                "python benchmarks/bench_networks.py " + " ".join(argv or sys.argv[1:]),
            )
        return

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    load_before = load_average()
    body: list[str] = []
    ceilings = {}
    for device in devices:
        best, med = ceiling(device, args.rounds)
        ceilings[device] = best
        print(f"{device}: ceiling {best:.1f} GFLOP/s (median {med:.1f})", flush=True)
        body += [
            f"### Generators on {device.upper()}",
            "",
            f"Ceiling (256→256-channel 3×3 conv on 128², same run): **{best:.1f} GFLOP/s** "
            f"best, {med:.1f} median. Batch 1, eval, `torch.inference_mode`, float32; FLOPs "
            "by `torch.utils.flop_counter` (2 per multiply-add; for `rnon-repair` they include "
            "the partial convolutions' mask-sum convolutions).",
            "",
            *generator_table(device, args.sizes, args.rounds, best),
            "",
        ]
    breakdown = op_breakdown(args.variant_size)
    variants, notes = optimize_variants(
        args.variant_size, args.rounds, args.compile, args.torchscript
    )
    best_after, _ = ceiling("cpu", args.rounds)
    body += [
        f"### Where `rnon-optimize` spends its time (CPU, {args.variant_size}², one profiled "
        "forward)",
        "",
        *breakdown,
        "",
        "### Same computation, other execution paths (CPU)",
        "",
        *variants,
        "",
        *(f"- {n}" for n in notes),
        f"- CPU ceiling measured again after the variants: {best_after:.1f} GFLOP/s.",
        f"- Load average (1/5/15 min) before: {load_before}; after: {load_average()} "
        f"(the machine has {os.cpu_count()} cores shared with other users).",
    ]
    text = "\n".join(body)
    print(text)
    if not args.no_write:
        write_section(
            "bench_networks",
            text + "\n\n" + FINDINGS.strip(),
            "python benchmarks/bench_networks.py " + " ".join(argv or sys.argv[1:]),
        )


if __name__ == "__main__":
    main()
