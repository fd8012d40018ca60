"""The feed-forward block of every set-transformer layer (DETR's and Deformable DETR's)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


class FeedForward(nn.Module):
    """``fc2(dropout(activation(fc1(x))))``: ``[..,D] -> [..,D]`` through ``ffn_dim`` channels.

    The layer around it adds its own dropout on the output before the residual sum.
    """

    def __init__(
        self, dim: int, ffn_dim: int, dropout: float, activation: Literal["relu", "gelu"] = "relu"
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.activation = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(ffn_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.activation(self.fc1(x))))
