"""``nin``: Network in Network (Lin et al. 2013; the notes' NiN), and its block.

A NiN block is a k×k convolution followed by two 1×1 convolutions, each with ReLU: a small
MLP slid over every position. The trunk is the notes' three blocks with a 3×3 stride-2 max
pool between them (padded by 1: sizes halve rounding up, so small inputs keep a map; 224 px →
54, 27, 14): ``c1`` (11×11 stride 4, 96
channels), ``c2`` (5×5, 256), ``c3`` (3×3, 384). NiN has no dense layers: its classifier,
``nin_head`` (``plugins/heads/classification.py``), is dropout, a NiN block to C channels and
global average pooling.
"""

from __future__ import annotations

import attrs
import torch
from torch import nn

from anchorage.core.interfaces import Backbone, FeatureSpec
from anchorage.core.registry import BACKBONES
from anchorage.plugins.backbones.max_pool import SeparableMaxPool2d


def nin_block(cin: int, cout: int, kernel: int, stride: int, padding: int) -> nn.Sequential:
    """Conv k×k → ReLU → (1×1 conv → ReLU) × 2."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 1),
        nn.ReLU(inplace=True),
    )


@BACKBONES.register("nin", examples=({"channels": (8, 8, 16)},))
class NiN(Backbone):
    """NiN trunk: ``forward(x [B,3,H,W])`` → ``c1`` (stride 4), ``c2`` (8), ``c3`` (16)."""

    @attrs.frozen(kw_only=True)
    class Config:
        channels: tuple[int, int, int] = (96, 256, 384)

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        a, b, c = cfg.channels
        self.block1 = nin_block(3, a, 11, 4, 0)
        self.block2 = nn.Sequential(SeparableMaxPool2d(3, 2, padding=1), nin_block(a, b, 5, 1, 2))
        self.block3 = nn.Sequential(SeparableMaxPool2d(3, 2, padding=1), nin_block(b, c, 3, 1, 1))
        self.feature_info = [
            FeatureSpec("c1", a, 4),
            FeatureSpec("c2", b, 8),
            FeatureSpec("c3", c, 16),
        ]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        c1 = self.block1(x)
        c2 = self.block2(c1)
        return {"c1": c1, "c2": c2, "c3": self.block3(c2)}
