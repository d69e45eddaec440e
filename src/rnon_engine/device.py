"""Pick the torch device: one rule for inference, training and fine-tuning."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rnon_engine.errors import InputError

if TYPE_CHECKING:  # imported where it runs: ONNX-only processes never load torch
    import torch

__all__ = ["device_type", "resolve_device"]

#: Device files whose absence on Linux means no CUDA / ROCm device (NVIDIA, WSL, AMD).
_ACCELERATOR_FILES = ("/dev/nvidia0", "/dev/dxg", "/dev/kfd")


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


def device_type(device: str | torch.device | None = "auto") -> str:
    """The type (``"cpu"``, ``"cuda"``, ``"mps"``) that :func:`resolve_device` gives ``device``.

    Torch is imported only where the answer needs it: ``"auto"`` on a machine that may
    have an accelerator (a Linux machine with no NVIDIA, WSL or ROCm device file has none,
    so it is the CPU there without torch). Explicit names are not checked (only
    :func:`resolve_device` refuses a device that is not available).
    """
    if device is not None and not isinstance(device, str):
        return str(device.type)
    if device is not None and device != "auto":
        return device.split(":", 1)[0]
    if sys.platform.startswith("linux") and not any(Path(f).exists() for f in _ACCELERATOR_FILES):
        return "cpu"
    return resolve_device(device).type
