"""``lenet``: LeNet-5's convolutional trunk (LeCun et al. 1998; the notes' first CNN).

Two stages of 5×5 convolution, activation and 2×2 average pooling: ``c1`` (6 channels, the
first conv padded by 2, stride 2) and ``c2`` (16 channels, unpadded conv, stride ~4). LeNet's
dense layers (120, 84, C) are a head: ``linear_head`` with ``hidden: [120, 84]`` (after
global pooling instead of flattening the 5×5 map, so any input size works). ``activation``:
``sigmoid`` as the original, or ``relu``.
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from torch import nn

from anchorage.core.interfaces import Backbone, FeatureSpec
from anchorage.core.registry import BACKBONES


@BACKBONES.register("lenet", examples=({}, {"activation": "relu", "channels": (4, 8)}))
class LeNet(Backbone):
    """LeNet-5 trunk: ``forward(x [B,3,H,W])`` → ``{"c1": [B,6,H/2,W/2],
    "c2": [B,16,~H/4,~W/4]}``."""

    example_input_size = (32, 32)

    @attrs.frozen(kw_only=True)
    class Config:
        channels: tuple[int, int] = (6, 16)
        activation: Literal["sigmoid", "relu"] = "sigmoid"

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        act = nn.Sigmoid if cfg.activation == "sigmoid" else nn.ReLU
        a, b = cfg.channels
        self.stage1 = nn.Sequential(nn.Conv2d(3, a, 5, padding=2), act(), nn.AvgPool2d(2, 2))
        self.stage2 = nn.Sequential(nn.Conv2d(a, b, 5), act(), nn.AvgPool2d(2, 2))
        self.feature_info = [FeatureSpec("c1", a, 2), FeatureSpec("c2", b, 4)]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        c1 = self.stage1(x)
        return {"c1": c1, "c2": self.stage2(c1)}
