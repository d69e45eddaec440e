"""Which method repairs which hole: damage kinds measured from the mask, and the rules.

The ``"auto"`` method (:mod:`rnon_engine.inference.auto`) splits a hole mask into groups
(8-connected components, merged when only one known pixel separates them), measures each
group and sorts it into a damage kind:

============  =====================================================================
kind          group features (``n`` = pixel count, ``t`` = thickness, see below)
============  =====================================================================
``pixel``     ``n == 1``: an isolated dead pixel
``speck``     ``t <= 3`` and ``n <= 25``: dead-pixel clusters, dust of radius 1
``thin``      ``t <= 5`` otherwise: scratches 1-4 px wide, dust of radius 2
``spot``      ``t <= 21`` and compact (``n <= 2 t²``): dust r3-4, spots r3-10
``blob``      ``t <= 51`` and compact: spots r10-25
``large``     everything else: free-form strokes, large blobs, long wide holes
============  =====================================================================

The thickness ``t = 2·d - 1`` where ``d`` is the largest Euclidean distance from a pixel of
the group to the nearest known pixel (:func:`scipy.ndimage.distance_transform_edt`): 1 for
a single pixel or a 1-px line, 3 for a 3- or 4-px line, about the diameter for a disk.

:data:`RULES` maps each kind to the method that repaired it best in the committed
measurement (``benchmarks/auto_rules.py``, table in ``docs/evaluation.md``);
:data:`FALLBACK_RULES` is used when no network weights are available. Nothing here
imports torch: the batch driver describes ``"auto"`` without loading a network.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "FALLBACK_RULES",
    "KINDS",
    "LABEL_NAMES",
    "NETWORK",
    "PREFILL",
    "RULES",
    "Group",
    "auto_provenance",
    "classify",
    "describe_auto",
    "groups",
    "kind_of",
    "method_labels",
    "method_pixels",
]

#: Damage kinds, in the order of the table above.
KINDS = ("pixel", "speck", "thin", "spot", "blob", "large")
#: The name the rules use for the network (the packaged default model).
NETWORK = "default"
#: kind -> method, from the measurement in ``benchmarks/auto_rules.py``.
RULES: dict[str, str] = {
    "pixel": "biharmonic",
    "speck": "biharmonic",
    "thin": NETWORK,
    "spot": NETWORK,
    "blob": NETWORK,
    "large": NETWORK,
}
#: kind -> the best classical method in the same measurement, when no network weights
#: are available.
FALLBACK_RULES: dict[str, str] = {
    "pixel": "biharmonic",
    "speck": "biharmonic",
    "thin": "biharmonic",
    "spot": "ns",
    "blob": "ns",
    "large": "ns",
}
#: The cheapest method: fills every hole first (prefill and input checks).
PREFILL = "telea"
#: Method label codes of :func:`method_labels` (0 = not a hole).
LABEL_NAMES: dict[int, str] = {1: "telea", 2: "ns", 3: "biharmonic", 4: NETWORK}
_CODES = {name: code for code, name in LABEL_NAMES.items()}
#: Groups closer than this many known pixels are one group (1: one known pixel between).
MERGE_GAP = 1


@dataclass(frozen=True)
class Group:
    """One group of hole pixels and its measured features.

    Attributes:
        label: Its label in the array returned by :func:`groups`.
        pixels: Number of hole pixels.
        thickness: ``2·d - 1``, ``d`` the largest distance to a known pixel.
        kind: Its damage kind (:data:`KINDS`).
    """

    label: int
    pixels: int
    thickness: int
    kind: str


def kind_of(pixels: int, thickness: int) -> str:
    """The damage kind of a group with these features (the table in the module docstring)."""
    if pixels <= 1:
        return "pixel"
    if thickness <= 3 and pixels <= 25:
        return "speck"
    if thickness <= 5:
        return "thin"
    compact = pixels <= 2 * thickness * thickness
    if thickness <= 21 and compact:
        return "spot"
    if thickness <= 51 and compact:
        return "blob"
    return "large"


def groups(hole: np.ndarray) -> tuple[np.ndarray, list[Group]]:
    """Split a 2-D hole mask into groups and classify them.

    Args:
        hole: ``H×W`` bool, True = hole.

    Returns:
        ``(labels, groups)``: an int32 ``H×W`` array (0 outside the holes, group ``i`` has
        label ``i``) and the groups in label order.
    """
    found, flat, inside = _groups(hole)
    labels = np.zeros(np.shape(hole), dtype=np.int32)
    labels.ravel()[flat] = inside
    return labels, found


def _groups(hole: np.ndarray) -> tuple[list[Group], np.ndarray, np.ndarray]:
    """:func:`groups` without its label image.

    Sparse damage on a large plane is a few thousand hole pixels among millions:
    everything after the components is computed on the hole pixels, and no plane-sized
    array is made that the caller does not need.

    Returns:
        The groups, the hole pixels' flat indices and their labels (int32, as in
        :func:`groups`).
    """
    import cv2

    hole = np.asarray(hole, dtype=bool)
    if hole.ndim != 2:
        raise ValueError(f"groups() takes a 2-D mask, got shape {hole.shape}")
    eight = np.ones((3, 3), dtype=np.uint8)
    holes8 = np.ascontiguousarray(hole).view(np.uint8)
    # OpenCV's dilation: the same as scipy's binary_dilation with an 8-connected
    # structure (nothing enters from past the edge), 7x faster on a 4096² mask.
    joined = cv2.dilate(holes8, eight, iterations=MERGE_GAP) if MERGE_GAP else holes8
    h, w = hole.shape
    flat = np.flatnonzero(hole)
    # 16-bit labels (half the memory) when there are fewer hole pixels than their range.
    ltype = cv2.CV_16U if flat.size < np.iinfo(np.uint16).max else cv2.CV_32S
    count, joined_labels = cv2.connectedComponents(joined, connectivity=8, ltype=ltype)
    count -= 1  # OpenCV counts the background
    ys, xs = np.divmod(flat, w)
    cv_label = joined_labels.ravel()[flat].astype(np.int32)
    to_raster = _raster_order(cv_label, count, ys, xs, w)
    inside = to_raster[cv_label]
    if count == 0:
        return [], flat, inside
    pixels = np.bincount(inside, minlength=count + 1)
    # Distance to the nearest known pixel; the maximum per group gives the thickness.
    # Single pixels (most groups of sparse damage) have d = 1: skip the transform for them.
    depth = np.zeros(count + 1, dtype=np.float64)
    depth[pixels == 1] = 1.0
    multi = np.flatnonzero(pixels > 1)
    multi = multi[multi > 0]
    # Each group's box, from its pixels (what ndimage.find_objects gives, without reading
    # the whole label image).
    y0 = np.full(count + 1, h, dtype=np.int64)
    x0 = np.full(count + 1, w, dtype=np.int64)
    y1 = np.zeros(count + 1, dtype=np.int64)
    x1 = np.zeros(count + 1, dtype=np.int64)
    np.minimum.at(y0, inside, ys)
    np.minimum.at(x0, inside, xs)
    np.maximum.at(y1, inside, ys + 1)
    np.maximum.at(x1, inside, xs + 1)
    windows = []
    for lab in multi:
        # The group's box and one ring of known pixels (none past the image's edge, where
        # the distance is then measured to the known pixels inside).
        windows.append(
            (
                slice(max(0, int(y0[lab]) - 1), min(h, int(y1[lab]) + 1)),
                slice(max(0, int(x0[lab]) - 1), min(w, int(x1[lab]) + 1)),
            )
        )
    if sum((ys.stop - ys.start) * (xs.stop - xs.start) for ys, xs in windows) > hole.size // 2:
        # Boxes as large as the image (long strokes): one transform of the whole mask.
        # Groups are at least 2 known pixels apart, so a group pixel's nearest known
        # pixel is nearer than any other group's: the same distances as group by group.
        dist = _distance(holes8).ravel()[flat].astype(np.float64)
        np.maximum.at(depth, inside, dist)
    else:
        from_raster = np.argsort(to_raster)  # scipy's label -> OpenCV's (a permutation)
        for lab, (ys, xs) in zip(multi, windows, strict=True):
            # The group's hole pixels in its box: those of its OpenCV component.
            mine = (joined_labels[ys, xs] == from_raster[lab]) & hole[ys, xs]
            depth[lab] = _distance(mine.view(np.uint8)).max()
    out = []
    for lab in range(1, count + 1):
        if pixels[lab] == 0:
            continue
        t = int(round(2 * depth[lab] - 1))
        out.append(Group(lab, int(pixels[lab]), t, kind_of(int(pixels[lab]), t)))
    return out, flat, inside


def _raster_order(
    found: np.ndarray, count: int, ys: np.ndarray, xs: np.ndarray, w: int
) -> np.ndarray:
    """Relabel the hole pixels' components as :func:`scipy.ndimage.label` numbers them.

    OpenCV's connected components (several times faster than scipy's on a large plane)
    number them in another order; scipy's follows each component's first pixel in raster
    order. A component of the dilated mask starts at its top row, :data:`MERGE_GAP` above
    its highest hole pixel (cut at the image's edge), at the leftmost column that the
    hole pixels within :data:`MERGE_GAP` rows of that row reach: found from the hole pixels
    alone.

    Args:
        found: OpenCV's label (1..count) of each hole pixel.
        count: Number of components.
        ys: The hole pixels' rows.
        xs: Their columns.
        w: The plane's width.

    Returns:
        int32 table from OpenCV's labels to scipy's (0 to 0).
    """
    if count == 0:
        return np.zeros(1, dtype=np.int32)
    top = np.full(count + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(top, found, ys)
    top = np.maximum(top - MERGE_GAP, 0)
    near = ys <= top[found] + MERGE_GAP
    left = np.full(count + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(left, found[near], xs[near])
    left = np.maximum(left - MERGE_GAP, 0)
    start = top[1:] * w + left[1:]
    new = np.zeros(count + 1, dtype=np.int32)
    new[1 + np.argsort(start, kind="stable")] = np.arange(1, count + 1, dtype=np.int32)
    return new


def _distance(inside: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance of each nonzero pixel to the nearest zero pixel (float32)."""
    import cv2

    return cv2.distanceTransform(np.ascontiguousarray(inside), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def classify(hole: np.ndarray) -> np.ndarray:
    """The damage kind of every hole pixel of a 2-D mask.

    Returns:
        A uint8 ``H×W`` array: 0 outside the holes, ``1 + KINDS.index(kind)`` inside.
    """
    hole = np.asarray(hole, dtype=bool)
    out = np.zeros(hole.shape, dtype=np.uint8)
    flat, kinds = _kinds(hole)
    out.ravel()[flat] = kinds
    return out


def _kinds(hole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The hole pixels' flat indices and their kinds (``1 + KINDS.index(kind)``, uint8)."""
    found, flat, inside = _groups(hole)
    table = np.zeros(max((g.label for g in found), default=0) + 1, dtype=np.uint8)
    for g in found:
        table[g.label] = 1 + KINDS.index(g.kind)
    return flat, table[inside]


def method_labels(mask: np.ndarray, rules: Mapping[str, str] = RULES) -> np.ndarray:
    """Which method fills which pixel: a label image for display (napari Labels).

    Args:
        mask: Hole mask (nonzero = hole), ``H×W`` or with leading axes (``...×H×W``):
            every 2-D plane is grouped on its own.
        rules: kind -> method (:data:`RULES` or :data:`FALLBACK_RULES`).

    Returns:
        uint8 array of the mask's shape: 0 for known pixels, else a code of
        :data:`LABEL_NAMES` (1 telea, 2 ns, 3 biharmonic, 4 the network).
    """
    hole = np.asarray(mask) != 0
    if hole.ndim < 2:
        raise ValueError(f"a mask has at least 2 dimensions, got shape {hole.shape}")
    out = np.zeros(hole.shape, dtype=np.uint8)
    for idx in np.ndindex(*hole.shape[:-2]):
        if hole[idx].any():
            flat, codes = method_pixels(hole[idx], rules)  # the hole pixels only
            out[idx].ravel()[flat] = codes
    return out


def method_pixels(
    hole: np.ndarray, rules: Mapping[str, str] = RULES
) -> tuple[np.ndarray, np.ndarray]:
    """The hole pixels of a 2-D mask and the method that fills each.

    What :func:`method_labels` gives, for the hole pixels alone (a few thousand among
    millions on sparse damage): no plane-sized array is made.

    Args:
        hole: ``H×W`` bool, True = hole.
        rules: kind -> method.

    Returns:
        ``(flat, codes)``: the hole pixels' flat indices in raster order, and their method
        codes (uint8, :data:`LABEL_NAMES`).
    """
    lut = np.zeros(len(KINDS) + 1, dtype=np.uint8)
    for i, kind in enumerate(KINDS):
        lut[i + 1] = _CODES[rules[kind]]
    flat, kinds = _kinds(hole)
    return flat, lut[kinds]


def auto_provenance(
    rules: dict[str, str], members: dict[str, dict[str, Any]], name: str = "auto"
) -> dict[str, Any]:
    """The provenance of an ``"auto"`` inpainter from its rules and members' provenance."""
    from rnon_engine import __version__

    network = members.get(NETWORK)
    prov: dict[str, Any] = {
        "method": "auto",
        "name": name,
        "package_version": __version__,
        "rules": dict(rules),
        "members": {m: dict(p) for m, p in members.items()},
        "stages": [PREFILL, *sorted({m for m in rules.values() if m != PREFILL})],
    }
    if network is not None:
        for key in ("weights", "sha256"):
            if key in network:
                prov[key] = network[key]
    return prov


def describe_auto(
    network: str | os.PathLike = "default",
    *,
    stage2: str | os.PathLike | None = None,
    tile_size: int = 512,
    stage2_region: str = "band",
) -> dict[str, Any]:
    """``Inpainter.from_pretrained("auto").provenance`` from the weights' metadata alone.

    Falls back to :data:`FALLBACK_RULES` when the network's weights are missing, as
    ``from_pretrained("auto")`` does.
    """
    from rnon_engine.errors import WeightsError
    from rnon_engine.inference.provenance import describe

    rules = dict(RULES)
    members: dict[str, dict[str, Any]] = {}
    try:
        members[NETWORK] = describe(
            network, stage2=stage2, tile_size=tile_size, stage2_region=stage2_region
        )
    except WeightsError:
        rules = dict(FALLBACK_RULES)
    for method in sorted((set(rules.values()) | {PREFILL}) - {NETWORK, "biharmonic"}):
        members[method] = describe(method, tile_size=tile_size)
    return auto_provenance(rules, members)
