"""Choosing the device a run uses (training, evaluation and inference alike)."""

from __future__ import annotations

import torch

from ..errors import AnchorageError


def select_device(requested: str | None) -> torch.device:
    """``cpu`` / ``cuda`` / ``cuda:N`` as asked; ``auto`` or None: CUDA when available."""
    if requested in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AnchorageError(f"device {requested!r} asked for, but CUDA is not available")
    return device
