"""Synthetic stacks for the stack model (issue 17): training samples and benchmark regimes.

A stack of ``2K + 1`` planes is built around one picture (the middle plane) by warping it
(:func:`synth_stack`): sub-pixel or larger shifts, small rotations and zooms, an intensity
drift per plane, Gaussian noise, and optionally a focus change (Gaussian blur of some
neighbour planes). The middle plane gets holes from the paper's ratio buckets
(:func:`rnon_engine.train.masks.bucket_mask`) or fine damage; neighbours may get their own
holes, the same holes, or be missing (the edge of a stack).

- :func:`benchmark_stack` makes the three regimes of ``benchmarks/stack_context.py``
  (``a`` near-equal, ``b`` motion, ``c`` same holes) exactly as that benchmark scores them.
- :func:`training_sample` draws one training crop from a mix of regimes (see
  :data:`TRAIN_MIX`) and returns the network inputs
  (:func:`rnon_engine.inference.stack_inputs.stack_inputs`, the same code inference runs),
  the clean middle plane and the pixels to score.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from rnon_engine.inference.stack_inputs import align_neighbours, stack_inputs
from rnon_engine.train.masks import BUCKETS, bucket_mask, fine_damage_mask

__all__ = [
    "BENCH_REGIMES",
    "EXTRA_REGIMES",
    "TRAIN_MIX",
    "StackSample",
    "benchmark_stack",
    "synth_stack",
    "training_sample",
]

#: The benchmark's regimes (issue 17's goal is stated for them).
BENCH_REGIMES = ("a near-equal", "b motion", "c same holes")
#: Extra benchmark regimes where the neighbours disagree with the plane: ``d`` as ``a`` with
#: two of the neighbours out of focus (Gaussian blur σ = 2 px), ``e`` as ``a`` with the
#: planes on one side showing another picture (a cut, a bad frame).
EXTRA_REGIMES = ("d focus change", "e unrelated side")
#: Training regimes and their probabilities.
TRAIN_MIX = {
    "near-equal": 0.25,  # shift <= 0.6 px, drift, noise
    "motion": 0.35,  # shift <= 5 px, rotation <= 2.5 deg, zoom <= 3 %
    "focus": 0.15,  # near-equal or motion, some neighbours blurred
    "same-holes": 0.1,  # the middle plane's holes (grown or shrunk) in every plane
    "unrelated": 0.15,  # some neighbours show other content (a cut, a flash, a bad frame)
}


def synth_stack(
    picture: np.ndarray,
    k: int,
    rng: np.random.Generator,
    *,
    shift: float,
    angle: float,
    zoom: float,
    drift: float = 0.03,
    noise: float = 0.01,
) -> tuple[np.ndarray, np.ndarray]:
    """A ``(2k+1)×H×W`` stack whose middle plane is ``picture`` (times its drift).

    Every other plane is ``picture`` warped by a random rotation (±``angle`` degrees), zoom
    (±``zoom``) and shift (±``shift`` px per axis), with reflected borders; every plane
    is multiplied by ``1 ± drift``; noise of standard deviation ``noise`` is added.

    Returns:
        ``(noisy stack float32 in [0, 1], clean stack float32)``.
    """
    h, w = picture.shape
    clean = []
    for z in range(2 * k + 1):
        if z == k:
            plane = picture.copy()
        else:
            mat = cv2.getRotationMatrix2D(
                (w / 2, h / 2), rng.uniform(-angle, angle), 1 + rng.uniform(-zoom, zoom)
            )
            mat[:, 2] += rng.uniform(-shift, shift, 2)
            plane = cv2.warpAffine(
                picture, mat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
            )
        clean.append(plane * (1 + rng.uniform(-drift, drift)))
    clean_st = np.clip(np.stack(clean), 0, 1).astype(np.float32)
    noisy = clean_st + rng.normal(0, noise, clean_st.shape).astype(np.float32)
    return np.clip(noisy, 0, 1).astype(np.float32), clean_st


def benchmark_stack(
    picture: np.ndarray,
    regime: str,
    k: int,
    rng: np.random.Generator,
    other: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The benchmark's stack in one of :data:`BENCH_REGIMES` or :data:`EXTRA_REGIMES`.

    ``a``, ``c``, ``d``, ``e``: shifts up to 0.5 px; ``b``: shifts up to 4 px, rotations up
    to 2° and 2 % zoom; all: drift ±3 %, noise σ = 0.01. (``c`` differs from ``a`` by its
    masks, which the caller draws; ``d`` blurs the planes next to the middle one, ``e``
    puts ``other``, a picture of the same shape, in every plane before it.)

    Returns:
        ``(noisy stack, clean stack)`` as :func:`synth_stack`.
    """
    if regime not in BENCH_REGIMES + EXTRA_REGIMES:
        raise ValueError(f"unknown regime {regime!r}; known: {BENCH_REGIMES + EXTRA_REGIMES}")
    if regime.startswith("b"):
        return synth_stack(picture, k, rng, shift=4.0, angle=2.0, zoom=0.02)
    noisy, clean = synth_stack(picture, k, rng, shift=0.5, angle=0.0, zoom=0.0)
    if regime.startswith("d"):  # the nearest plane on each side out of focus
        for z in (k - 1, k + 1):
            noisy[z] = cv2.GaussianBlur(noisy[z], (0, 0), 2.0)
    elif regime.startswith("e"):
        if other is None:
            raise ValueError("regime 'e unrelated side' needs another picture (other=)")
        for z in range(k):  # every plane before the middle one
            noisy[z] = np.clip(other + rng.normal(0, 0.01, other.shape), 0, 1)
    return noisy, clean


def _middle_hole(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    r = rng.random()
    if r < 0.8:
        hole = bucket_mask(shape, rng, list(BUCKETS)[int(rng.integers(len(BUCKETS)))])
        if rng.random() < 0.25:
            hole |= fine_damage_mask(shape, rng)
        return hole
    return fine_damage_mask(shape, rng, (0.002, 0.05))


def _neighbour_hole(
    middle: np.ndarray, regime: str, rng: np.random.Generator
) -> np.ndarray:
    shape = middle.shape
    if regime == "same-holes":
        hole = middle.copy()
        r = int(rng.integers(0, 4))
        if r:
            kernel = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
            op = cv2.dilate if rng.random() < 0.5 else cv2.erode
            hole = op(hole.astype(np.uint8), kernel).astype(bool)
        return hole
    r = rng.random()
    if r < 0.5:
        return np.zeros(shape, bool)
    if r < 0.8:
        return fine_damage_mask(shape, rng, (0.002, 0.05))
    return bucket_mask(shape, rng, (0.01, 0.3))


@dataclass
class StackSample:
    """One training sample.

    Attributes:
        x: ``C×H×W`` network inputs.
        target: ``H×W`` clean middle plane.
        weight: ``H×W`` float32, 1 on the hole pixels the network answers for (an aligned
            neighbour knows them), else 0.
        regime: The regime it was drawn from.
    """

    x: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    regime: str


def training_sample(
    picture: np.ndarray,
    other: np.ndarray,
    rng: np.random.Generator,
    *,
    crop: int,
    k: int = 2,
    slots: int = 2,
) -> StackSample:
    """Draw one training sample from ``picture`` (grayscale float32 in [0, 1]).

    Args:
        picture: A training picture, larger than ``crop`` on both sides.
        other: Another picture (for the ``unrelated`` regime), same constraint.
        rng: Source of randomness.
        crop: Side of the square crop.
        k: Planes each side in the stack.
        slots: The network's neighbour slots each side.

    Returns:
        A :class:`StackSample`.
    """
    regime = str(rng.choice(list(TRAIN_MIX), p=list(TRAIN_MIX.values())))

    def cut(im: np.ndarray) -> np.ndarray:
        y = int(rng.integers(0, im.shape[0] - crop + 1))
        x = int(rng.integers(0, im.shape[1] - crop + 1))
        return im[y : y + crop, x : x + crop]

    middle = cut(picture)
    if rng.random() < 0.5:
        middle = middle[:, ::-1]
    middle = np.ascontiguousarray(middle)
    moving = regime == "motion" or (regime in ("focus", "unrelated") and rng.random() < 0.5)
    if moving:
        shift, angle, zoom = rng.uniform(1, 5), rng.uniform(0.5, 2.5), rng.uniform(0, 0.03)
    else:
        shift, angle, zoom = rng.uniform(0, 0.6), 0.0, 0.0
    noise = float(rng.choice([0.0, 0.005, 0.01, 0.02, 0.03]))
    drift = float(rng.uniform(0, 0.06))
    noisy, clean = synth_stack(
        middle, k, rng, shift=shift, angle=angle, zoom=zoom, drift=drift, noise=noise
    )
    side = [z for z in range(2 * k + 1) if z != k]
    if regime == "focus":
        for z in rng.choice(side, size=int(rng.integers(1, len(side) + 1)), replace=False):
            sigma = float(rng.uniform(0.8, 3.0))
            noisy[z] = cv2.GaussianBlur(noisy[z], (0, 0), sigma)
    if regime == "unrelated":
        for z in rng.choice(side, size=int(rng.integers(1, len(side) + 1)), replace=False):
            alien = cut(other) * (1 + rng.uniform(-0.1, 0.1))
            noisy[z] = np.clip(alien + rng.normal(0, noise, alien.shape), 0, 1)
    hole = _middle_hole(middle.shape, rng)
    neighbours = []
    for z in side:
        if rng.random() < 0.1:  # the edge of a stack: this plane does not exist
            continue
        nh = _neighbour_hole(hole, regime, rng)
        if nh.all():
            continue
        neighbours.append((z - k, noisy[z], ~nh))
    plane = noisy[k]
    aligned, _ = align_neighbours(plane, ~hole, neighbours)
    inputs = stack_inputs(plane, hole, aligned, slots)
    weight = inputs.has.astype(np.float32)
    return StackSample(inputs.x, clean[k], weight, regime)
