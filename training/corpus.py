"""Build the default model's training corpus from Debian packages and scikit-image photos.

Usage::

    python -m training.corpus --out <corpus> [--cache DIR] [--val-fraction 0.1]

Steps (idempotent and resumable; the download and extraction cache is reused):

1. ``apt-get download`` (no install) each package of :data:`PACKAGES` into
   ``<cache>/debs`` (default cache: ``<out>/../cache``); a package that apt does not know
   (``apt-cache policy`` has no candidate) is skipped with a message.
2. ``dpkg-deb -x`` into ``<cache>/extract/<package>`` (redone only for a new version).
3. Select pictures with per-package rules (:data:`RULES`): photographs, telescope images,
   planet maps from real imagery, photo panoramas; no drawings, UI sprites, logos, or
   images whose shorter side is below 200 px. Symbolic links are skipped.
4. Add scikit-image's bundled pictures (:data:`SKIMAGE_PICTURES`).
5. Drop copies of the same picture at other sizes: a 16x16 difference hash
   (:func:`dhash`), pictures within :data:`DHASH_THRESHOLD` bits are grouped
   (:func:`group_duplicates`) and the largest is kept. Pictures that are variants of one
   design (a KDE wallpaper's light/dark/portrait files, a GNOME background's ``-l``/``-d``
   pair, the tiles of one Stellarium panorama) share a *group* and go to the same split.
6. Split by group, per (source, kind) stratum (:func:`split_groups`): a deterministic
   order by SHA-256 of ``seed:group`` and ``round(fraction * n)`` groups (at least one)
   to validation for every stratum with >= 5 groups. Photograph strata of several
   packages are large enough, so validation always holds real photographs.
7. Write ``<out>/<split>/<source>/<name>``: files whose longer side is at most
   :data:`MAX_SIDE` (2048 px) are copied byte for byte; larger ones are downscaled
   (OpenCV INTER_AREA) to 2048 px on the longer side and written as PNG (alpha kept).
   ``<out>/manifest.json`` and ``manifest.csv`` list every picture with package, version,
   original path, SHA-256 of the original and of the written file, sizes, kind and split.
   Files under ``<out>/train`` and ``<out>/val`` that the manifest does not list are removed.

Nothing of the corpus is committed to the repository.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

#: Longer side above which pictures are downscaled when written.
MAX_SIDE = 2048
#: Pictures whose shorter side is below this are left out (icons, sprites, thumbnails).
MIN_SIDE = 200
#: Hamming distance (of 256 bits) at or below which two pictures count as the same.
DHASH_THRESHOLD = 12
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Rule:
    """Which files of a package to take, of what kind, and how to group variants."""

    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    kind: str | Callable[[str], str] = "photo"
    group: Callable[[str], str] | None = None
    one_per_group: bool = False


def _stem(rel: str) -> str:
    return Path(rel).stem


_PLASMA_PHOTOS = {
    "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf",
    "Grey", "Kite", "OneStandsOut", "Path", "summer_1am",
}  # fmt: skip
_STELLARIUM_MAPS = {
    "earthmap", "earth-clouds", "moon", "moon_4k", "mars", "mercury", "venus", "jupiter",
    "saturn", "sun", "callisto", "europa", "ganymede", "io", "amalthea", "deimos", "phobos",
    "dione", "enceladus", "iapetus", "mimas", "rhea", "tethys", "hyperion", "phoebe",
    "epimetheus", "janus", "prometheus", "ida", "gaspra", "eros", "vesta", "ceres", "bennu",
    "pluto", "charon", "triton", "miranda", "ariel", "umbriel", "titania", "oberon", "proteus",
    "milkyway",
}  # fmt: skip
_STELLARIUM_PANORAMAS = ("garching", "grossmugl", "guereins", "hurricane", "mars", "moon",
                         "ocean", "trees")  # fmt: skip
_OPENCV_PHOTOS = (
    "aero1.jpg", "aero3.jpg", "aloeL.jpg", "aloeR.jpg", "apple.jpg", "baboon.jpg",
    "basketball1.png", "basketball2.png", "board.jpg", "box.png", "box_in_scene.png",
    "building.jpg", "butterfly.jpg", "chicky_512.png", "ela_original.jpg", "fruits.jpg",
    "graf1.png", "graf3.png", "home.jpg", "left.jpg", "leuvenA.jpg", "leuvenB.jpg",
    "messi5.jpg", "orange.jpg", "pca_test1.jpg", "rubberwhale1.png", "rubberwhale2.png",
    "smarties.png", "squirrel_cls.jpg", "stuff.jpg", "sudoku.png",
)  # fmt: skip


def _plasma_group(rel: str) -> str:
    # usr/share/wallpapers/<Name>/contents/images*/<size>.<ext>
    return rel.split("/")[3]


def _plasma_kind(rel: str) -> str:
    return "photo" if _plasma_group(rel) in _PLASMA_PHOTOS else "art"


def _stellarium_kind(rel: str) -> str:
    if "/nebulae/" in rel:
        return "telescope"
    if "/landscapes/" in rel:
        return "photo"
    return "planet-map"


def _stellarium_group(rel: str) -> str:
    if "/landscapes/" in rel:
        return "landscape-" + rel.split("/landscapes/")[1].split("/")[0]
    return _stem(rel)


_ST = "usr/share/stellarium/"
_OCV = "usr/share/doc/opencv-doc/examples/data/"

#: Package -> selection rule (paths are relative to the package root).
RULES: dict[str, Rule] = {
    "plasma-workspace-wallpapers": Rule(
        (
            "usr/share/wallpapers/*/contents/images/*",
            "usr/share/wallpapers/*/contents/images_dark/*",
        ),
        kind=_plasma_kind,
        group=_plasma_group,
        one_per_group=True,
    ),
    "ukui-wallpapers": Rule(("usr/share/backgrounds/*",), kind="art"),
    "gnome-backgrounds": Rule(
        ("usr/share/backgrounds/gnome/*",),
        kind="art",
        group=lambda rel: _stem(rel).removesuffix("-l").removesuffix("-d"),
        one_per_group=True,
    ),
    "lomiri-wallpapers-20.04": Rule(
        ("usr/share/backgrounds/*",),
        kind=lambda rel: "photo" if ("Kleiber" in rel or "Infinite-Sea" in rel) else "art",
    ),
    "sway-backgrounds": Rule(
        ("usr/share/backgrounds/sway/*",), kind="art", group=lambda _: "sway", one_per_group=True
    ),
    "stellarium-data": Rule(
        (
            _ST + "nebulae/default/*",
            *(_ST + f"textures/{n}.*" for n in sorted(_STELLARIUM_MAPS)),
            *(_ST + f"landscapes/{n}/*" for n in _STELLARIUM_PANORAMAS),
        ),
        exclude=(_ST + "landscapes/*/fogridge.*",),
        kind=_stellarium_kind,
        group=_stellarium_group,
    ),
    "opencv-doc": Rule(tuple(_OCV + n for n in _OPENCV_PHOTOS)),
    "scratch": Rule(("usr/share/scratch/Media/Backgrounds/*/*.jpg",)),
    "cimg-doc": Rule(
        ("usr/share/doc/cimg-dev/html/img/postcard*.jpg",),
        # Drawings, paintings, text and renders among the postcards (looked at one by one).
        exclude=tuple(
            f"usr/share/doc/cimg-dev/html/img/postcard{n}.jpg"
            for n in (12, 37, 41, 44, 51, 52, 55, 62, 66, 70, 71, 72, 73, 79, 80)
        ),
    ),
    "palapeli-data": Rule(("usr/share/palapeli/collection/*.jpg",)),
    "liblemonldap-ng-portal-perl": Rule(
        ("usr/share/lemonldap-ng/portal/htdocs/static/common/backgrounds/*",)
    ),
}
PACKAGES = tuple(RULES)

#: scikit-image's offline pictures used, with their kind. Real photographs (astronaut,
#: camera, chelsea/cat, coffee, rocket, stereo_motorcycle), texture photographs (brick,
#: grass, gravel), scientific images (coins, moon, hubble_deep_field, and the only
#: microscopy/medical ones: immunohistochemistry, cell, retina, microaneurysms). Left out:
#: horse (silhouette), text/page/checkerboard/logo/clock drawings or synthetic images,
#: lfw_subset (25 px faces).
SKIMAGE_PICTURES: dict[str, str] = {
    "astronaut": "photo",
    "camera": "photo",
    "cat": "photo",
    "chelsea": "photo",
    "coffee": "photo",
    "rocket": "photo",
    "stereo_motorcycle": "photo",
    "brick": "texture",
    "grass": "texture",
    "gravel": "texture",
    "coins": "scientific",
    "moon": "scientific",
    "hubble_deep_field": "telescope",
    "immunohistochemistry": "microscopy",
    "cell": "microscopy",
    "retina": "microscopy",
    "microaneurysms": "microscopy",
}


@dataclass
class Candidate:
    """One selected picture before deduplication and splitting."""

    source: str
    version: str
    original: str  # path inside the package, or "skimage.data.<name>"
    kind: str
    group: str
    height: int
    width: int
    sha256: str
    dhash: str = ""
    file: str = ""  # file on disk to copy from ("" for in-memory skimage pictures)
    split: str = ""
    written: str = ""
    written_sha256: str = ""
    written_size: list[int] = field(default_factory=list)


# ------------------------------------------------------------------ pure helpers (tested)


def dhash(image: np.ndarray, size: int = 16) -> np.ndarray:
    """Difference hash: ``size * size`` booleans, True where a pixel outshines its right neighbour.

    The image (any dtype; gray, or colour in OpenCV's BGR(A) order) is converted to gray
    (ITU-R BT.601 luma, as ``cv2.cvtColor``) and resized to
    ``size x (size + 1)`` with area averaging, so the hash does not change with resolution.
    """
    img = np.asarray(image).astype(np.float32)
    if img.ndim == 3 and img.shape[2] >= 3:
        img = cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_BGR2GRAY)
    elif img.ndim == 3:
        img = img[..., 0]
    small = cv2.resize(img, (size + 1, size), interpolation=cv2.INTER_AREA)
    return (small[:, 1:] > small[:, :-1]).ravel()


def hamming(a: np.ndarray, b: np.ndarray) -> int:
    """Number of differing bits between two hashes."""
    return int(np.count_nonzero(np.asarray(a) != np.asarray(b)))


def group_duplicates(hashes: Sequence[np.ndarray], threshold: int = DHASH_THRESHOLD) -> list[int]:
    """Label pictures so that those within ``threshold`` bits (transitively) share a label.

    Returns:
        One label per hash: the index of the first member of its group.
    """
    n = len(hashes)
    if n == 0:
        return []
    bits = np.stack([np.asarray(h, dtype=bool) for h in hashes])
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n - 1):
        dist = np.count_nonzero(bits[i + 1 :] != bits[i], axis=1)
        for j in np.flatnonzero(dist <= threshold) + i + 1:
            ri, rj = find(i), find(int(j))
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    return [find(i) for i in range(n)]


def keep_largest(labels: Sequence[int], areas: Sequence[int]) -> list[int]:
    """Indices to keep: the largest picture (ties: the first) of each duplicate label."""
    best: dict[int, int] = {}
    for i, (lab, area) in enumerate(zip(labels, areas, strict=True)):
        if lab not in best or area > areas[best[lab]]:
            best[lab] = i
    return sorted(best.values())


def split_groups(
    strata: dict[str, Sequence[str]],
    fraction: float = 0.1,
    seed: int = 0,
    min_groups: int = 5,
) -> dict[str, str]:
    """Assign each group to ``"train"`` or ``"val"``, stratum by stratum.

    Within a stratum groups are ordered by ``sha256(f"{seed}:{group}")`` and the first
    ``max(1, round(fraction * n))`` go to validation when the stratum has at least
    ``min_groups`` groups; smaller strata go to training. The result depends only on the
    group names, the seed and the fraction, not on the order of the input.

    Args:
        strata: Stratum name -> group names in it (a group belongs to one stratum).
        fraction: Share of each stratum's groups for validation.
        seed: Seed of the order.
        min_groups: Smallest stratum that gets validation groups.

    Returns:
        Group name -> ``"train"`` or ``"val"``.
    """
    result: dict[str, str] = {}
    for _, groups in sorted(strata.items()):
        uniq = sorted(set(groups), key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
        n_val = max(1, round(fraction * len(uniq))) if len(uniq) >= min_groups else 0
        for k, g in enumerate(uniq):
            result[g] = "val" if k < n_val else "train"
    return result


def select_files(root: Path, rule: Rule) -> list[str]:
    """Relative paths under ``root`` that match ``rule`` (regular image files, no symlinks)."""
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if full.suffix.lower() not in IMAGE_SUFFIXES or full.is_symlink():
                continue
            if any(fnmatch.fnmatchcase(rel, p) for p in rule.include) and not any(
                fnmatch.fnmatchcase(rel, p) for p in rule.exclude
            ):
                out.append(rel)
    return sorted(out)


# ---------------------------------------------------------------------- apt and dpkg


def _run(cmd: Sequence[str], cwd: Path | None = None) -> str:
    return subprocess.run(list(cmd), cwd=cwd, check=True, capture_output=True, text=True).stdout


def candidate_version(package: str) -> str | None:
    """Return apt's candidate version of ``package``, or None when apt does not know it."""
    try:
        out = _run(["apt-cache", "policy", package])
    except (OSError, subprocess.CalledProcessError):
        return None
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Candidate:"):
            ver = line.split(":", 1)[1].strip()
            return None if ver in ("", "(none)") else ver
    return None


def fetch_package(package: str, version: str, cache: Path) -> Path | None:
    """Download (if needed) and extract (if needed) a package; return its extracted root."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    deb = None
    for f in sorted(debs.glob(f"{package}_*.deb")):
        try:
            fields = _run(["dpkg-deb", "-f", str(f), "Package", "Version"])
        except subprocess.CalledProcessError:
            continue
        info = dict(line.split(": ", 1) for line in fields.strip().splitlines())
        if info.get("Package") == package and info.get("Version") == version:
            deb = f
    if deb is None:
        print(f"  downloading {package} {version} ...", flush=True)
        try:
            _run(["apt-get", "download", f"{package}={version}"], cwd=debs)
        except subprocess.CalledProcessError as exc:
            print(f"  ! could not download {package}: {exc.stderr.strip()[-300:]}")
            return None
        return fetch_package(package, version, cache)
    target = cache / "extract" / package
    stamp = target / ".extracted-version"
    if not (stamp.is_file() and stamp.read_text() == version):
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        _run(["dpkg-deb", "-x", str(deb), str(target)])
        stamp.write_text(version)
    return target


# ------------------------------------------------------------------------------- build


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(path: Path) -> np.ndarray | None:
    return cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)


def _gather_package(package: str, version: str, root: Path) -> list[tuple[Candidate, np.ndarray]]:
    rule = RULES[package]
    found = []
    for rel in select_files(root, rule):
        path = root / rel
        img = _read(path)
        if img is None:
            print(f"  ! unreadable, skipped: {package}:{rel}")
            continue
        h, w = img.shape[:2]
        if min(h, w) < MIN_SIDE:
            continue
        kind = rule.kind(rel) if callable(rule.kind) else rule.kind
        group = f"{package}:{rule.group(rel) if rule.group else _stem(rel)}"
        cand = Candidate(
            source=package, version=version, original=rel, kind=kind, group=group,
            height=h, width=w, sha256=_sha256_bytes(path.read_bytes()), file=str(path),
        )  # fmt: skip
        found.append((cand, img))
    return found


def _gather_skimage() -> list[tuple[Candidate, np.ndarray]]:
    import skimage
    import skimage.data

    found = []
    for name, kind in SKIMAGE_PICTURES.items():
        try:
            img = getattr(skimage.data, name)()
        except Exception as exc:  # noqa: BLE001 - a missing picture is skipped
            print(f"  ! skimage.data.{name} unavailable: {exc}")
            continue
        if isinstance(img, tuple):
            img = img[0]  # stereo pair: left view
        img = np.ascontiguousarray(img)
        if img.dtype != np.uint8:
            img = (np.clip(img, 0, 1) * 255).astype(np.uint8) if img.dtype.kind == "f" else img
        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
        cand = Candidate(
            source="scikit-image", version=skimage.__version__, original=f"skimage.data.{name}",
            kind=kind, group=f"scikit-image:{name}", height=img.shape[0], width=img.shape[1],
            sha256=_sha256_bytes(bgr.tobytes()),
        )  # fmt: skip
        found.append((cand, bgr))
    return found


def _write(cand: Candidate, img: np.ndarray, out: Path, used: set[str]) -> None:
    h, w = img.shape[:2]
    base = (
        Path(cand.original).stem
        if cand.source != "scikit-image"
        else cand.original.rsplit(".", 1)[1]
    )
    # Disambiguate files of one package with the same name (e.g. KDE's 1920x1080.png).
    tag = cand.group.split(":", 1)[1].replace("/", "_")
    name = base if tag == base else f"{tag}__{base}"
    if f"{cand.source}/{name}" in used:
        name = f"{name}_{cand.sha256[:8]}"
    used.add(f"{cand.source}/{name}")
    big = max(h, w) > MAX_SIDE
    if cand.file and not big:
        ext = Path(cand.file).suffix.lower()
        rel = Path(cand.split) / cand.source / f"{name}{ext}"
        data = Path(cand.file).read_bytes()
        size = [h, w]
    else:
        if big:
            f = MAX_SIDE / max(h, w)
            img = cv2.resize(img, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
        rel = Path(cand.split) / cand.source / f"{name}.png"
        ok, buf = cv2.imencode(".png", img)
        if not ok:
            raise RuntimeError(f"could not encode {cand.original}")
        data = buf.tobytes()
        size = list(img.shape[:2])
    dest = out / rel
    digest = _sha256_bytes(data)
    if not (dest.is_file() and _sha256_bytes(dest.read_bytes()) == digest):
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(dest)
    cand.written = rel.as_posix()
    cand.written_sha256 = digest
    cand.written_size = size


def build(
    out: Path,
    cache: Path,
    packages: Iterable[str] = PACKAGES,
    fraction: float = 0.1,
    seed: int = 0,
    use_skimage: bool = True,
) -> list[Candidate]:
    """Build the corpus in ``out`` (see the module docstring); return the kept pictures."""
    gathered: list[tuple[Candidate, np.ndarray]] = []
    for package in packages:
        version = candidate_version(package)
        if version is None:
            print(f"- {package}: not known to apt here, skipped")
            continue
        root = fetch_package(package, version, cache)
        if root is None:
            continue
        items = _gather_package(package, version, root)
        print(f"- {package} {version}: {len(items)} files selected", flush=True)
        gathered.extend(items)
    if use_skimage:
        items = _gather_skimage()
        print(f"- scikit-image: {len(items)} pictures", flush=True)
        gathered.extend(items)

    cands = [c for c, _ in gathered]
    hashes = [dhash(img) for _, img in gathered]
    for c, h in zip(cands, hashes, strict=True):
        c.dhash = np.packbits(h).tobytes().hex()
    # Copies of one picture at other sizes: keep the largest.
    areas = [c.height * c.width for c in cands]
    keep = set(keep_largest(group_duplicates(hashes), areas))
    # Variants of one design (light/dark/portrait files): keep the largest per group.
    # Groups of distinct parts (a panorama's tiles) keep all and share a split.
    single = [i for i in sorted(keep) if RULES.get(cands[i].source, Rule(())).one_per_group]
    labels = {g: k for k, g in enumerate(sorted({cands[i].group for i in single}))}
    winners = keep_largest([labels[cands[i].group] for i in single], [areas[i] for i in single])
    keep -= set(single) - {single[w] for w in winners}
    keep = sorted(keep)

    strata: dict[str, list[str]] = {}
    for i in keep:
        strata.setdefault(f"{cands[i].source}/{cands[i].kind}", []).append(cands[i].group)
    splits = split_groups(strata, fraction=fraction, seed=seed)

    kept = []
    used: set[str] = set()
    for i in keep:
        c, img = gathered[i]
        c.split = splits[c.group]
        _write(c, img, out, used)
        kept.append(c)

    listed = {c.written for c in kept}
    for split in ("train", "val"):
        for p in sorted((out / split).rglob("*")) if (out / split).is_dir() else []:
            if p.is_file() and p.relative_to(out).as_posix() not in listed:
                p.unlink()

    rows = [{k: v for k, v in asdict(c).items() if k != "file"} for c in kept]
    manifest = {
        "format": 1,
        "seed": seed,
        "val_fraction": fraction,
        "max_side": MAX_SIDE,
        "min_side": MIN_SIDE,
        "dhash_threshold": DHASH_THRESHOLD,
        "pictures": rows,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    with open(out / "manifest.csv", "w", newline="") as fh:
        fields = [k for k in rows[0] if k != "written_size"] + ["written_height", "written_width"]
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            r = dict(r)
            hw = r.pop("written_size")
            writer.writerow({**r, "written_height": hw[0], "written_width": hw[1]})
    return kept


def summary_table(kept: Sequence[Candidate]) -> str:
    """Markdown table: pictures per source and kind, per split."""
    counts = Counter((c.source, c.kind, c.split) for c in kept)
    keys = sorted({(s, k) for s, k, _ in counts})
    lines = ["| source | kind | train | val |", "|---|---|---:|---:|"]
    for s, k in keys:
        lines.append(f"| {s} | {k} | {counts[(s, k, 'train')]} | {counts[(s, k, 'val')]} |")
    tr = sum(v for (_, _, sp), v in counts.items() if sp == "train")
    va = sum(v for (_, _, sp), v in counts.items() if sp == "val")
    lines.append(f"| **total** | | {tr} | {va} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="corpus folder to write")
    parser.add_argument("--cache", type=Path, help="download/extract cache (default: OUT/../cache)")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--packages", nargs="*", default=list(PACKAGES), help="subset of packages")
    parser.add_argument("--no-skimage", action="store_true", help="leave out scikit-image pictures")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.packages) - set(PACKAGES))
    if unknown:
        parser.error(f"unknown packages {unknown}; known: {', '.join(PACKAGES)}")
    if not 0.0 <= args.val_fraction < 1.0 or math.isnan(args.val_fraction):
        parser.error("--val-fraction must be in [0, 1)")
    out = args.out.resolve()
    cache = (args.cache or out.parent / "cache").resolve()
    out.mkdir(parents=True, exist_ok=True)
    kept = build(out, cache, args.packages, args.val_fraction, args.seed, not args.no_skimage)
    print()
    print(summary_table(kept))
    print(f"\nmanifest: {out / 'manifest.json'} ({len(kept)} pictures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
