"""Finite model state: parameters and buffers checked without a host sync per tensor.

A large learning rate can push weights or BatchNorm running statistics to Inf while the loss
stays finite (BatchNorm normalises with the batch's own statistics in training), so checking
the loss alone lets a blown-up model be saved as the "last good" checkpoint. The trainer folds
``nonfinite_flag`` into the all-reduce it already does per step and calls it again before every
checkpoint write; ``nonfinite_names`` (slow path, only after a failure) says which tensors.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import get_total_norm


def state_tensors(model: nn.Module) -> list[torch.Tensor]:
    """Floating-point parameters and buffers of ``model`` (integer counters are skipped)."""
    tensors = [*model.parameters(), *model.buffers()]
    return [t.detach() for t in tensors if t.is_floating_point() or t.is_complex()]


def nonfinite_flag(model: nn.Module, device: torch.device | str | None = None) -> torch.Tensor:
    """0-d float tensor on ``device``: 1.0 when any parameter or buffer holds NaN/Inf, else 0.

    One max-abs reduction over all tensors (``get_total_norm`` with the inf-norm: fused per
    device and dtype; NaN and Inf propagate, finite values cannot overflow); no host sync.
    """
    tensors = state_tensors(model)
    if not tensors:
        return torch.zeros((), device=device)
    norm = get_total_norm(tensors, norm_type=float("inf"))
    return (~torch.isfinite(norm)).float().to(device or norm.device)


def nonfinite_names(model: nn.Module) -> list[str]:
    """Names of the parameters and buffers holding NaN/Inf, in ``state_dict`` order."""
    named = [*model.named_parameters(), *model.named_buffers()]
    return [
        name
        for name, t in named
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all())
    ]


def describe_nonfinite(model: nn.Module, shown: int = 5) -> str:
    """``"11 tensors (a.running_var, b.weight, ... and 6 more)"`` for an error message."""
    names = nonfinite_names(model)
    more = f", ... and {len(names) - shown} more" if len(names) > shown else ""
    listed = ", ".join(names[:shown]) + more
    return f"{len(names)} tensor{'s' if len(names) != 1 else ''} ({listed})"
