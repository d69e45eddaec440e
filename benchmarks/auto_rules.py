"""Which method repairs which kind of damage best: the measurement behind ``"auto"``.

Scores every method on crops of the corpus' validation photographs, one damage kind at a
time, and prints mean hole PSNR ± standard error per kind and method (the table in
docs/evaluation.md). Also:

- per *routing* kind (:data:`rnon_engine.inference.routing.KINDS`, measured from each
  mask's groups) the pooled hole PSNR of every method and the best one: the rules;
- ``--estimate``: ``Inpainter.estimate_error`` of ``auto`` against its true hole RMSE over
  pictures × kinds (Spearman correlation, median ratio estimate/truth);
- a reference column, the mean of the network's and biharmonic's fills (not a rule);
- ``--speed``: auto beside Telea on 0.5 % random single pixels of a 2048² RGB image.

Usage::

    python benchmarks/auto_rules.py --corpus <corpus> --pictures 12 --size 256 --estimate
    python benchmarks/auto_rules.py --speed
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

METHODS = ["telea", "ns", "biharmonic", "net-stage1", "net-both", "auto", "mean(net,bih)"]
#: Not single methods: compared with, not chosen from.
COMBINED = ("auto", "mean(net,bih)")
KIND_NAMES = [
    "dead pixels",
    "dead-pixel clusters",
    "dust r1-4",
    "scratches 1-4 px",
    "spots r3-10",
    "spots r10-25",
    "free-form 0.01-0.25",
    "free-form 0.25-0.40",
    "free-form 0.40-0.50",
    "free-form 0.50-0.60",
    "large blobs",
    "mixed",
]


def _disk(mask: np.ndarray, rng: np.random.Generator, r: int) -> None:
    import cv2

    h, w = mask.shape
    c = (int(rng.integers(r, w - r)), int(rng.integers(r, h - r)))
    cv2.circle(mask, c, int(r), 1, -1)


def _scratch(mask: np.ndarray, rng: np.random.Generator, width: int) -> None:
    import cv2

    h, w = mask.shape
    x, y = rng.uniform(0, w), rng.uniform(0, h)
    a = rng.uniform(0, 2 * np.pi)
    pts = [(x, y)]
    for _ in range(int(rng.integers(2, 4))):
        a += rng.uniform(-0.4, 0.4)
        step = rng.uniform(0.15, 0.35) * min(h, w)
        x, y = x + step * np.cos(a), y + step * np.sin(a)
        pts.append((x, y))
    arr = np.round(np.asarray(pts)).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(mask, [arr], False, 1, thickness=int(width))


def make_mask(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A hole mask of one damage kind on a ``size²`` image."""
    from rnon_engine.train.masks import bucket_mask

    m = np.zeros((size, size), np.uint8)
    n = size * size
    if kind == "dead pixels":  # 0.5 % isolated single pixels
        idx = rng.choice(n, int(0.005 * n), replace=False)
        m.ravel()[idx] = 1
    elif kind == "dead-pixel clusters":
        for _ in range(max(1, n // 3000)):
            y, x = rng.integers(3, size - 3, 2)
            for _ in range(int(rng.integers(2, 7))):
                m[y + rng.integers(-2, 3), x + rng.integers(-2, 3)] = 1
    elif kind == "dust r1-4":
        for _ in range(max(1, n // 2000)):
            _disk(m, rng, int(rng.integers(1, 5)))
    elif kind == "scratches 1-4 px":
        for _ in range(3):
            _scratch(m, rng, int(rng.integers(1, 5)))
    elif kind == "spots r3-10":
        for _ in range(max(1, n // 10000)):
            _disk(m, rng, int(rng.integers(3, 11)))
    elif kind == "spots r10-25":
        for _ in range(2):
            _disk(m, rng, int(rng.integers(10, 26)))
    elif kind.startswith("free-form "):
        return bucket_mask(size, rng, kind.split(" ", 1)[1])
    elif kind == "large blobs":
        import cv2

        for _ in range(2):
            c = tuple(int(v) for v in rng.integers(size // 4, 3 * size // 4, 2))
            axes = tuple(int(v) for v in rng.integers(size // 10, size // 5, 2))
            cv2.ellipse(m, c, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    elif kind == "mixed":  # dust, dead pixels, scratches and a few larger holes
        for _ in range(max(1, n // 4000)):
            _disk(m, rng, int(rng.integers(0, 4)))
        idx = rng.choice(n, int(0.001 * n), replace=False)
        m.ravel()[idx] = 1
        for _ in range(2):
            _scratch(m, rng, int(rng.integers(1, 4)))
        for _ in range(3):
            _disk(m, rng, int(rng.integers(5, 20)))
    else:
        raise ValueError(kind)
    return m.astype(bool)


def load_pictures(corpus: Path, count: int, size: int, seed: int) -> list[np.ndarray]:
    """``count`` random ``size²`` RGB crops of the corpus' validation photographs."""
    import cv2

    manifest = json.loads((corpus / "manifest.json").read_text())
    entries = [
        e for e in manifest["pictures"] if e.get("split") == "val" and e.get("kind") == "photo"
    ]
    rng = np.random.default_rng(seed)
    crops = []
    for e in entries[:count]:
        img = cv2.imread(str(corpus / e["written"]), cv2.IMREAD_COLOR)
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        h, w = img.shape[:2]
        if min(h, w) < size:
            continue
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        crops.append(np.ascontiguousarray(img[y : y + size, x : x + size]))
    return crops


def hole_sse(truth: np.ndarray, out: np.ndarray, where: np.ndarray) -> tuple[float, int]:
    d = out[where].astype(np.float64) - truth[where].astype(np.float64)
    return float(np.sum(d * d)), int(d.size)


def psnr(sse: float, count: int) -> float:
    mse = sse / max(count, 1)
    return 100.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def mean_se(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, np.float64)
    se = float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else float("nan")
    return float(a.mean()), se


def build_methods() -> dict:
    from rnon_engine.inference.inpainter import Inpainter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = Inpainter.from_pretrained("default", device="cpu")
        auto = Inpainter.from_pretrained("auto", device="cpu")
    out = {m: Inpainter.from_pretrained(m) for m in ("telea", "ns", "biharmonic")}
    out["net-stage1"] = lambda img, m: net.inpaint(img, m, stages="repair")
    out["net-both"] = net
    out["auto"] = auto
    return out


def run_quality(args: argparse.Namespace) -> dict:
    from rnon_engine.inference.routing import KINDS, classify

    pictures = load_pictures(Path(args.corpus), args.pictures, args.size, args.seed)
    methods = build_methods()
    names = [m for m in METHODS if m in args.methods]
    if not {"net-both", "biharmonic"} <= set(names) and "mean(net,bih)" in names:
        names.remove("mean(net,bih)")
        args.methods = names
    kinds = [k for k in KIND_NAMES if k in args.kinds]
    per_case: dict[str, dict[str, list[float]]] = {k: {m: [] for m in names} for k in kinds}
    pooled = {k: {m: [0.0, 0] for m in names} for k in KINDS}
    estimates: list[dict] = []
    t0 = time.time()
    for pi, img in enumerate(pictures):
        for ki, kind in enumerate(kinds):
            rng = np.random.default_rng([args.seed, pi, ki])
            mask = make_mask(kind, args.size, rng)
            routed = classify(mask)
            outs: dict[str, np.ndarray] = {}
            for name in names:
                if name == "mean(net,bih)":  # the ensembles note's average, for reference
                    pair = (outs["net-both"].astype(np.float64), outs["biharmonic"])
                    out = np.rint((pair[0] + pair[1]) / 2).astype(img.dtype)
                else:
                    out = methods[name](img, mask)
                outs[name] = out
                assert np.array_equal(out[~mask], img[~mask])
                sse, cnt = hole_sse(img, out, mask)
                per_case[kind][name].append(psnr(sse, cnt))
                for j, rk in enumerate(KINDS):
                    sel = routed == j + 1
                    if sel.any():
                        s, c = hole_sse(img, out, sel)
                        pooled[rk][name][0] += s
                        pooled[rk][name][1] += c
                if name == "auto" and args.estimate:
                    est = methods["auto"].estimate_error(img, mask, seed=args.seed)
                    estimates.append(
                        {
                            "picture": pi,
                            "kind": kind,
                            "estimate": est,
                            "truth": math.sqrt(sse / cnt),
                        }
                    )
            print(
                f"[{time.time() - t0:6.0f} s] picture {pi} {kind}: "
                + " ".join(f"{n}={per_case[kind][n][-1]:.2f}" for n in names),
                file=sys.stderr,
                flush=True,
            )
    return {"per_case": per_case, "pooled": pooled, "estimates": estimates, "n": len(pictures)}


def report(res: dict, args: argparse.Namespace) -> str:
    from scipy.stats import spearmanr

    from rnon_engine.inference.routing import FALLBACK_RULES, RULES

    names = [m for m in METHODS if m in args.methods]
    lines = [
        f"Hole PSNR (dB), mean ± s.e. over {res['n']} crops ({args.size}², val photographs)",
        "",
        "| damage kind | " + " | ".join(names) + " | best single | auto − best (paired) |",
        "|---" * (len(names) + 3) + "|",
    ]
    verdicts = []
    for kind, rows in res["per_case"].items():
        stats = {m: mean_se(v) for m, v in rows.items() if v}
        singles = {m: s for m, s in stats.items() if m not in COMBINED}
        best = max(singles, key=lambda m: singles[m][0]) if singles else ""
        cells = [f"{stats[m][0]:.2f} ± {stats[m][1]:.2f}" for m in names]
        paired = ""
        if "auto" in stats and best:
            diff = np.subtract(rows["auto"], rows[best])
            d, se = mean_se(list(diff))
            paired = f"{d:+.2f} ± {se:.2f} ({int((diff > 0).sum())}/{diff.size} better)"
            margin = stats["auto"][0] - stats[best][0]
            verdicts.append(
                f"{kind}: auto {'≥' if margin >= -stats[best][1] else '<'} best single "
                f"({best}) within one s.e."
            )
            if kind == "mixed":
                for m in singles:
                    dm, sem = mean_se(list(np.subtract(rows["auto"], rows[m])))
                    verdicts.append(f"  mixed, auto − {m} (paired): {dm:+.2f} ± {sem:.2f} dB")
        lines.append(f"| {kind} | " + " | ".join(cells) + f" | {best} | {paired} |")
    lines += ["", *verdicts]
    lines += ["", "Pooled hole PSNR (dB) per routing kind (pixels of that kind, all cases)", ""]
    derived: dict[str, str] = {}
    fallback: dict[str, str] = {}
    lines += ["| routing kind | pixels | " + " | ".join(names) + " | best single |"]
    lines += ["|---" * (len(names) + 3) + "|"]
    for rk, rows in res["pooled"].items():
        cnt = next(iter(rows.values()))[1]
        if not cnt:
            continue
        vals = {m: psnr(*rows[m]) for m in names}
        singles = {m: v for m, v in vals.items() if m not in COMBINED}
        best = max(singles, key=singles.get)
        derived[rk] = "default" if best.startswith("net") else best
        classical = {m: v for m, v in vals.items() if m in ("telea", "ns", "biharmonic")}
        if classical:
            fallback[rk] = max(classical, key=classical.get)
        lines.append(
            f"| {rk} | {cnt // 3} | " + " | ".join(f"{vals[m]:.2f}" for m in names) + f" | {best} |"
        )
    lines += [
        "",
        f"Rules derived: {derived}",
        f"Rules in use (routing.RULES): {RULES}",
        f"Classical rules derived: {fallback}",
        f"Classical rules in use (routing.FALLBACK_RULES): {FALLBACK_RULES}",
    ]
    if res["estimates"]:
        est = np.array([e["estimate"] for e in res["estimates"]])
        tru = np.array([e["truth"] for e in res["estimates"]])
        rho = spearmanr(est, tru).statistic
        ratio = est / tru
        lines += [
            "",
            f"Error estimate of auto over {len(est)} pictures × kinds: Spearman {rho:.3f}, "
            f"median estimate/truth {np.median(ratio):.3f} "
            f"(quartiles {np.quantile(ratio, 0.25):.3f}-{np.quantile(ratio, 0.75):.3f})",
        ]
    return "\n".join(lines)


def run_speed(args: argparse.Namespace) -> str:
    from rnon_engine.inference.inpainter import Inpainter

    size = 2048
    rng = np.random.default_rng(0)
    y = np.linspace(0, 1, size, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, size, dtype=np.float32)[None, :]
    img = np.empty((size, size, 3), np.uint8)
    for c in range(3):
        img[..., c] = (127 + 100 * np.sin(6 * x + c) * np.cos(4 * y - c)).astype(np.uint8)
    mask = np.zeros(size * size, bool)
    mask[rng.choice(size * size, int(0.005 * size * size), replace=False)] = True
    mask = mask.reshape(size, size)
    rows = []
    for name in ("telea", "auto"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inp = Inpainter.from_pretrained(name, device="cpu")
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            inp.inpaint(img, mask)
            times.append(time.perf_counter() - t)
        extra = f" ({inp.last_counts})" if name == "auto" else ""
        rows.append(f"| {name} | {min(times):.2f} s (best of {args.repeat}){extra} |")
    return "\n".join(
        [f"0.5 % random single pixels ({int(mask.sum())}), 2048² uint8 RGB", "", *rows]
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", default=os.environ.get("RNON_CORPUS"), help="corpus folder")
    p.add_argument("--pictures", type=int, default=12)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--kinds", nargs="+", default=KIND_NAMES)
    p.add_argument("--estimate", action="store_true", help="validate estimate_error too")
    p.add_argument("--speed", action="store_true", help="only the 2048² single-pixel timing")
    p.add_argument("--repeat", type=int, default=3, help="timed repeats for --speed")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the raw results here")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.speed:
        print(run_speed(args))
        return 0
    if not args.corpus:
        p.error("--corpus (or RNON_CORPUS) is needed: the folder with manifest.json")
    res = run_quality(args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    print(report(res, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
