"""Pick the torch device: one rule for inference, training and fine-tuning."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rnon_engine.errors import InputError

if TYPE_CHECKING:  # imported where it runs: ONNX-only processes never load torch
    import torch

__all__ = ["resolve_device"]


def resolve_device(
    device: str | torch.device | None = "auto", *, local_rank: int | None = None
) -> torch.device:
    """``"auto"`` (or None) picks CUDA, then Apple MPS, then the CPU; anything else is checked.

    Args:
        device: ``"auto"``, None, or a torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``,
            ``"mps"``).
        local_rank: In a distributed run, the process's local rank: ``"auto"`` then picks
            ``cuda:<local_rank>`` (one GPU per process).

    Raises:
        InputError: The device is unknown or not available here.
    """
    import torch

    if device is None or (isinstance(device, str) and device == "auto"):
        if torch.cuda.is_available():
            return (
                torch.device("cuda", local_rank) if local_rank is not None else torch.device("cuda")
            )
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(
            f"unknown device {device!r} ({exc}); use 'auto', 'cpu' or 'cuda'"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"device {device!r} asked for but CUDA is not available; use 'auto' or 'cpu'"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(
            f"device {device!r} asked for but MPS is not available; use 'auto' or 'cpu'"
        )
    return dev
