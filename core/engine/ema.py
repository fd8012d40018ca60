"""Exponential moving average of the model weights (``train.ema: {decay: 0.999}``).

A thin layer over ``torch.optim.swa_utils.AveragedModel`` with an EMA averaging function:
``ema = decay * ema + (1 - decay) * weights`` after every optimizer step, buffers (BatchNorm
statistics) averaged too. The trainer evaluates and saves ``best.pt`` with the averaged
weights, stores the state in ``last.pt`` (``"ema"``) and restores it on resume.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .config import EmaConfig


class ModelEma:
    """The averaged copy of ``model`` (``module``), updated by ``update(model)``."""

    def __init__(self, model: nn.Module, cfg: EmaConfig) -> None:
        self.averaged = AveragedModel(
            copy.deepcopy(model),
            multi_avg_fn=get_ema_multi_avg_fn(cfg.decay),
            use_buffers=True,
        )
        self.averaged.eval()

    @property
    def module(self) -> nn.Module:
        """The model with the averaged weights (evaluate this one)."""
        return self.averaged.module

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold ``model``'s current weights into the average (the first call copies them)."""
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict[str, Any]:
        """Averaged weights and the update count (tensors only)."""
        return self.averaged.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()``'s output."""
        self.averaged.load_state_dict(state)
