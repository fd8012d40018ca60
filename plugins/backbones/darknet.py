"""``darknet``: a small Darknet-style backbone (conv-BN-LeakyReLU, residual blocks).

YOLOv3's Darknet-53 pattern at a configurable width and depth: a 3×3 stem, then per stage a
stride-2 3×3 convolution followed by ``blocks[i]`` residual blocks (1×1 to half the channels,
3×3 back, added to the input). The last ``num_levels`` stages are the outputs, named
``c<k>`` with ``k = log2(stride)`` (``c3, c4, c5`` for five stages), fine → coarse.
"""

from __future__ import annotations

import attrs
import torch
from torch import nn

from anchorage.core.interfaces import Backbone, FeatureSpec
from anchorage.core.registry import BACKBONES


def conv_bn_act(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv (no bias) → BatchNorm → LeakyReLU(0.1), 'same' padding: Darknet's unit."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.1, inplace=True),
    )


class Residual(nn.Module):
    """``x + conv3x3(conv1x1(x))`` with a bottleneck of ``channels // 2``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(channels // 2, 1)
        self.body = nn.Sequential(conv_bn_act(channels, hidden, 1), conv_bn_act(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _positive(_inst: object, attr: attrs.Attribute, value: tuple[int, ...]) -> None:
    if not value or any(v <= 0 for v in value):
        raise ValueError(f"{attr.name}: expected a non-empty list of values > 0, got {value}")


@BACKBONES.register(
    "darknet",
    examples=(
        {"stem_channels": 4, "channels": (8, 8, 16, 16), "blocks": (1, 1, 1, 1)},
        {"stem_channels": 4, "channels": (8, 16), "blocks": (0, 1), "num_levels": 2},
    ),
)
class Darknet(Backbone):
    """Stem + stages of (stride-2 conv, residual blocks); the last ``num_levels`` stages out.

    Darknet-53 is ``stem_channels: 32, channels: [64, 128, 256, 512, 1024],
    blocks: [1, 2, 8, 8, 4]``. ``forward(x [B,3,H,W])`` → ``{c<k>: [B, channels[i], H/2^k,
    W/2^k]}`` for the last ``num_levels`` stages (sizes rounded up).
    """

    @attrs.frozen(kw_only=True)
    class Config:
        stem_channels: int = attrs.field(default=16, validator=attrs.validators.gt(0))
        channels: tuple[int, ...] = attrs.field(
            default=(32, 64, 128, 256, 512), validator=_positive
        )
        blocks: tuple[int, ...] = (1, 1, 2, 2, 1)
        num_levels: int = attrs.field(default=3, validator=attrs.validators.ge(1))

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        if len(cfg.blocks) != len(cfg.channels) or any(b < 0 for b in cfg.blocks):
            raise ValueError(
                f"darknet: blocks needs one count >= 0 per stage ({len(cfg.channels)} stages), "
                f"got {list(cfg.blocks)}"
            )
        if cfg.num_levels > len(cfg.channels):
            raise ValueError(
                f"darknet: num_levels {cfg.num_levels} > number of stages {len(cfg.channels)}"
            )
        self.stem = conv_bn_act(3, cfg.stem_channels)
        cins = (cfg.stem_channels, *cfg.channels[:-1])
        self.stages = nn.ModuleList(
            nn.Sequential(conv_bn_act(cin, cout, stride=2), *[Residual(cout) for _ in range(n)])
            for cin, cout, n in zip(cins, cfg.channels, cfg.blocks)
        )
        first = len(cfg.channels) - cfg.num_levels
        self.out_stages = range(first, len(cfg.channels))
        self.feature_info = [
            FeatureSpec(f"c{i + 1}", cfg.channels[i], 2 ** (i + 1)) for i in self.out_stages
        ]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        out = {}
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_stages:
                out[f"c{i + 1}"] = x
        return out
