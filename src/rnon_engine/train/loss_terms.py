"""The RNON loss terms as pure functions (paper eq. 2-10, 12-14), with their shape checks.

Conventions: images are ``[N, C, H, W]`` floats in ``[0, 1]``; masks are ``[N, 1, H, W]`` or
``[N, C, H, W]`` with 1 = valid (known) pixel, 0 = hole; discriminator outputs are logits.
Every L1 term is a mean, i.e. normalised by the element count of the tensor it is taken
over (the masked L1 terms by the image's element count ``N·C·H·W``, as in Liu et al.).
Shapes are checked up front; a bad one raises :class:`~rnon_engine.errors.InputError`
naming it. The weighted totals of the two stages are in :mod:`rnon_engine.train.losses`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rnon_engine.errors import InputError

__all__ = [
    "adversarial_term",
    "check_mask",
    "check_tensor",
    "check_triplet",
    "composite",
    "content_loss",
    "discriminator_loss",
    "eq9_adversarial_loss",
    "generator_adversarial_loss",
    "gram_matrix",
    "hole_loss",
    "hole_region",
    "perceptual_loss",
    "ssim",
    "ssim_loss",
    "style_loss",
    "total_variation_loss",
    "valid_loss",
]

# --------------------------------------------------------------------------- shape checks


def check_tensor(x: Any, name: str, ndim: int | None = None, channels: int | None = None) -> None:
    """Raise :class:`InputError` unless ``x`` is a float tensor of the given rank/channels."""
    if not isinstance(x, Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.ndim != ndim:
        want = "[N, C, H, W]" if ndim == 4 else f"{ndim}-D"
        raise InputError(f"{name} must be {want}, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise InputError(f"{name} must have {channels} channels, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{name} must be floating point, got {x.dtype} (shape {tuple(x.shape)})")


def _check_pair(output: Tensor, target: Tensor) -> None:
    check_tensor(output, "output", ndim=4)
    check_tensor(target, "target", ndim=4)
    if output.shape != target.shape:
        raise InputError(
            f"output shape {tuple(output.shape)} differs from target shape {tuple(target.shape)}"
        )


def check_mask(mask: Tensor, image: Tensor, name: str = "mask") -> None:
    """Raise :class:`InputError` unless ``mask`` is ``[N, 1 or C, H, W]`` matching ``image``."""
    check_tensor(mask, name, ndim=4)
    n, c, h, w = image.shape
    if mask.shape[0] != n or tuple(mask.shape[2:]) != (h, w) or mask.shape[1] not in (1, c):
        raise InputError(
            f"{name} shape {tuple(mask.shape)} does not fit image shape {tuple(image.shape)}: "
            f"expected [{n}, 1 or {c}, {h}, {w}]"
        )


def check_triplet(output: Tensor, target: Tensor, mask: Tensor) -> None:
    """Check an (output, target, mask) triple of a masked term."""
    _check_pair(output, target)
    check_mask(mask, target)


def _check_logits(x: Any, name: str) -> None:
    check_tensor(x, name)
    if x.ndim < 1 or x.numel() == 0:
        raise InputError(f"{name} must be a non-empty [N, ...] tensor, got shape {tuple(x.shape)}")


def _check_features(feats: Sequence[Tensor], name: str) -> None:
    if isinstance(feats, Tensor) or not isinstance(feats, Sequence) or len(feats) == 0:
        raise InputError(f"{name} must be a non-empty list of [N, C, H, W] feature maps")
    for i, f in enumerate(feats):
        check_tensor(f, f"{name}[{i}]", ndim=4)


def _check_same_features(a: Sequence[Tensor], b: Sequence[Tensor], na: str, nb: str) -> None:
    _check_features(a, na)
    _check_features(b, nb)
    if len(a) != len(b):
        raise InputError(f"{na} has {len(a)} feature maps but {nb} has {len(b)}")
    for i, (fa, fb) in enumerate(zip(a, b, strict=True)):
        if fa.shape != fb.shape:
            raise InputError(
                f"{na}[{i}] shape {tuple(fa.shape)} differs from {nb}[{i}] shape {tuple(fb.shape)}"
            )


# --------------------------------------------------------------------------- pixel terms


def composite(output: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """``I_com = M·I_real + (1 − M)·I_out`` (eq. 5): known pixels from the target.

    Args:
        output: Network output ``[N, C, H, W]``.
        target: Ground truth ``[N, C, H, W]``.
        mask: ``[N, 1|C, H, W]``, 1 = valid.

    Returns:
        ``[N, C, H, W]``; gradients flow to ``output`` in the hole only.
    """
    check_triplet(output, target, mask)
    return mask * target + (1 - mask) * output


def valid_loss(output: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """``mean |M ⊙ (I_out − I_real)|`` over all ``N·C·H·W`` elements (eq. 2, with ``I_real``).

    Args:
        output: ``[N, C, H, W]``.
        target: ``[N, C, H, W]`` ground truth (the SPEC replaces the paper's ``I_dam``).
        mask: ``[N, 1|C, H, W]``, 1 = valid.

    Returns:
        Scalar.
    """
    check_triplet(output, target, mask)
    return (mask * (output - target)).abs().mean()


def hole_loss(output: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """``mean |(1 − M) ⊙ (I_out − I_real)|`` over all ``N·C·H·W`` elements (eq. 3).

    Args:
        output: ``[N, C, H, W]``.
        target: ``[N, C, H, W]`` ground truth.
        mask: ``[N, 1|C, H, W]``, 1 = valid.

    Returns:
        Scalar; 0 when the mask has no hole.
    """
    check_triplet(output, target, mask)
    return ((1 - mask) * (output - target)).abs().mean()


def content_loss(output: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Stage 2's content loss (eq. 12): ``mean |M ⊙ (I_opt − I_real)|``.

    The mean runs over all ``N·C·H·W`` elements (the paper's ``1/N`` over the batch of a
    per-image mean). As printed it only covers the valid pixels; the hole is left to the
    perceptual and adversarial terms.

    Args:
        output: ``[N, C, H, W]`` stage-2 output.
        target: ``[N, C, H, W]`` ground truth.
        mask: ``[N, 1|C, H, W]``, 1 = valid.

    Returns:
        Scalar.
    """
    return valid_loss(output, target, mask)


def hole_region(mask: Tensor) -> Tensor:
    """The hole dilated by one pixel (3×3 neighbourhood), the region ``P`` of eq. 10.

    Args:
        mask: ``[N, 1|C, H, W]``, 1 = valid.

    Returns:
        Same shape as ``mask``: 1 inside the dilated hole, 0 elsewhere.
    """
    check_tensor(mask, "mask", ndim=4)
    return F.max_pool2d(1 - mask, kernel_size=3, stride=1, padding=1)


def total_variation_loss(image: Tensor, mask: Tensor) -> Tensor:
    """Total variation of ``image`` over the one-pixel-dilated hole (eq. 10, Liu et al.).

    ``Σ |I[i, j+1] − I[i, j]|`` over horizontal neighbour pairs with both pixels in ``P``
    plus the same over vertical pairs, divided by the image's element count ``N·C·H·W``
    (Liu et al.'s normalisation, consistent with :func:`hole_loss`).

    Args:
        image: ``[N, C, H, W]``, normally the composite ``I_com``.
        mask: ``[N, 1|C, H, W]``, 1 = valid.

    Returns:
        Scalar; 0 for a constant image or a mask without hole.
    """
    check_tensor(image, "image", ndim=4)
    check_mask(mask, image)
    region = hole_region(mask).to(image.dtype)
    rx = region[..., :, 1:] * region[..., :, :-1]
    ry = region[..., 1:, :] * region[..., :-1, :]
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs() * rx
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs() * ry
    return (dx.sum() + dy.sum()) / image.numel()


# --------------------------------------------------------------------------- SSIM


def _gaussian_1d(size: int, sigma: float, device: torch.device) -> Tensor:
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    x: Tensor,
    y: Tensor,
    *,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
) -> Tensor:
    """Mean structural similarity (Wang et al. 2004) with a Gaussian window, differentiable.

    Local statistics use an 11-tap Gaussian window (σ = 1.5), computed per channel by
    separable convolutions without padding (only windows fully inside the image count);
    population (biased) variances; ``C1 = (0.01·L)²``, ``C2 = (0.03·L)²``. The result equals
    ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=L)`` averaged over channels and images.
    Computed in float32 (outside autocast): variances as differences of means lose too
    much in half precision.

    Args:
        x: ``[N, C, H, W]``.
        y: ``[N, C, H, W]``.
        data_range: ``L``, the value range (1 for images in [0, 1]).
        window_size: Taps of the Gaussian window (odd).
        sigma: Standard deviation of the window.

    Returns:
        Scalar in ``[-1, 1]`` (1 for identical images).
    """
    check_tensor(x, "x", ndim=4)
    check_tensor(y, "y", ndim=4)
    if x.shape != y.shape:
        raise InputError(f"x shape {tuple(x.shape)} differs from y shape {tuple(y.shape)}")
    if min(x.shape[2:]) < window_size:
        raise InputError(
            f"SSIM needs H and W >= {window_size} (its window), got shape {tuple(x.shape)}"
        )
    with torch.autocast(device_type=x.device.type, enabled=False):
        x, y = x.float(), y.float()
        c = x.shape[1]
        g = _gaussian_1d(window_size, sigma, x.device)
        kh = g.view(1, 1, -1, 1).expand(c, 1, window_size, 1)
        kw = g.view(1, 1, 1, -1).expand(c, 1, 1, window_size)

        def filt(z: Tensor) -> Tensor:
            return F.conv2d(F.conv2d(z, kh, groups=c), kw, groups=c)

        mu_x, mu_y = filt(x), filt(y)
        sxx = filt(x * x) - mu_x * mu_x
        syy = filt(y * y) - mu_y * mu_y
        sxy = filt(x * y) - mu_x * mu_y
        c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
        s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / (
            (mu_x * mu_x + mu_y * mu_y + c1) * (sxx + syy + c2)
        )
        return s.mean()


def ssim_loss(x: Tensor, y: Tensor, *, data_range: float = 1.0) -> Tensor:
    """``1 − SSIM(x, y)`` (see :func:`ssim`); 0 for identical images."""
    return 1 - ssim(x, y, data_range=data_range)


# --------------------------------------------------------------------------- feature terms


def gram_matrix(x: Tensor) -> Tensor:
    """Gram matrix normalised by ``K = 1/(C·H·W)``: ``G = F Fᵀ / (C·H·W)``, ``F = [C, H·W]``.

    Computed in float32 (outside autocast) so that half-precision features do not overflow.

    Args:
        x: Features ``[N, C, H, W]``.

    Returns:
        ``[N, C, C]``.
    """
    check_tensor(x, "features", ndim=4)
    n, c, h, w = x.shape
    with torch.autocast(device_type=x.device.type, enabled=False):
        f = x.float().reshape(n, c, h * w)
        return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def perceptual_loss(
    feats_out: Sequence[Tensor], feats_com: Sequence[Tensor], feats_real: Sequence[Tensor]
) -> Tensor:
    """Perceptual loss of one network (eq. 4).

    ``Σ_l mean|Ψ_l(I_out) − Ψ_l(I_real)| + mean|Ψ_l(I_com) − Ψ_l(I_real)|``.

    Args:
        feats_out: Feature maps of the output, one ``[N, C_l, H_l, W_l]`` per layer.
        feats_com: Feature maps of the composite, same shapes.
        feats_real: Feature maps of the ground truth, same shapes.

    Returns:
        Scalar (each layer's L1 is a mean over its elements).
    """
    _check_same_features(feats_out, feats_real, "feats_out", "feats_real")
    _check_same_features(feats_com, feats_real, "feats_com", "feats_real")
    total = feats_out[0].new_zeros(())
    for fo, fc, fr in zip(feats_out, feats_com, feats_real, strict=True):
        total = total + (fo - fr).abs().mean() + (fc - fr).abs().mean()
    return total


def style_loss(feats: Sequence[Tensor], feats_real: Sequence[Tensor]) -> Tensor:
    """Eq. 7/8 for one network: ``Σ_l mean|G(Ψ_l(I)) − G(Ψ_l(I_real))|`` (:func:`gram_matrix`).

    Call it with the output's features for ``L_style1`` and the composite's for ``L_style2``.

    Args:
        feats: Feature maps of the image, one ``[N, C_l, H_l, W_l]`` per layer.
        feats_real: Feature maps of the ground truth, same shapes.

    Returns:
        Scalar (each layer's L1 is a mean over the ``N·C_l·C_l`` Gram entries).
    """
    _check_same_features(feats, feats_real, "feats", "feats_real")
    total = feats[0].new_zeros((), dtype=torch.float32)
    for f, fr in zip(feats, feats_real, strict=True):
        total = total + (gram_matrix(f) - gram_matrix(fr)).abs().mean()
    return total


# --------------------------------------------------------------------------- adversarial


def generator_adversarial_loss(d_fake_logits: Tensor) -> Tensor:
    """Non-saturating GAN generator loss ``BCE(D(I_out), 1) = mean softplus(−logit)``.

    Args:
        d_fake_logits: Discriminator logits of the generated images, ``[N, ...]``.

    Returns:
        Scalar.
    """
    _check_logits(d_fake_logits, "d_fake_logits")
    return F.binary_cross_entropy_with_logits(d_fake_logits, torch.ones_like(d_fake_logits))


def eq9_adversarial_loss(d_fake_logits: Tensor, d_real_logits: Tensor) -> Tensor:
    """The paper's eq. 9: ``mean |σ(D(I_out)) − σ(D(I_real))|`` on probabilities.

    ``D(I_real)`` is a fixed target here (detached): the term trains the generator only.

    Args:
        d_fake_logits: Logits of the generated images ``[N, ...]``.
        d_real_logits: Logits of the real images, same shape.

    Returns:
        Scalar in ``[0, 1]``.
    """
    _check_logits(d_fake_logits, "d_fake_logits")
    _check_logits(d_real_logits, "d_real_logits")
    if d_fake_logits.shape != d_real_logits.shape:
        raise InputError(
            f"d_fake_logits shape {tuple(d_fake_logits.shape)} differs from d_real_logits "
            f"shape {tuple(d_real_logits.shape)}"
        )
    return (torch.sigmoid(d_fake_logits) - torch.sigmoid(d_real_logits.detach())).abs().mean()


def discriminator_loss(
    d_real_logits: Tensor, d_fake_logits: Tensor
) -> tuple[Tensor, dict[str, float]]:
    """Standard GAN discriminator loss ``BCE(D(I_real), 1) + BCE(D(I_fake), 0)``.

    Pass logits of generated images computed from detached images.

    Args:
        d_real_logits: Logits of real images ``[N, ...]``.
        d_fake_logits: Logits of generated images ``[M, ...]``.

    Returns:
        ``(loss, metrics)``; metrics: ``d_total``, ``d_real`` and ``d_fake`` (the two BCE
        terms), ``d_real_prob`` and ``d_fake_prob`` (mean sigmoid outputs).
    """
    _check_logits(d_real_logits, "d_real_logits")
    _check_logits(d_fake_logits, "d_fake_logits")
    real = F.binary_cross_entropy_with_logits(d_real_logits, torch.ones_like(d_real_logits))
    fake = F.binary_cross_entropy_with_logits(d_fake_logits, torch.zeros_like(d_fake_logits))
    loss = real + fake
    with torch.no_grad():
        vals = torch.stack(
            [
                loss.float(),
                real.float(),
                fake.float(),
                torch.sigmoid(d_real_logits.float()).mean(),
                torch.sigmoid(d_fake_logits.float()).mean(),
            ]
        ).tolist()
    names = ("d_total", "d_real", "d_fake", "d_real_prob", "d_fake_prob")
    return loss, dict(zip(names, vals, strict=True))


def adversarial_term(
    mode: str, d_fake_logits: Tensor | None, d_real_logits: Tensor | None
) -> Tensor:
    """The generator's adversarial term: ``"bce"`` (non-saturating) or ``"eq9"`` (the paper)."""
    if d_fake_logits is None:
        raise InputError(
            "the adversarial term needs d_fake_logits (the discriminator's logits of the "
            "output); pass them, or set the adv weight to 0"
        )
    if mode == "bce":
        return generator_adversarial_loss(d_fake_logits)
    if d_real_logits is None:
        raise InputError("adv_mode 'eq9' needs d_real_logits (the discriminator on I_real)")
    return eq9_adversarial_loss(d_fake_logits, d_real_logits)
