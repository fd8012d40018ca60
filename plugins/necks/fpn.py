"""Feature Pyramid Network neck (``fpn``), torchvision's ``FeaturePyramidNetwork``.

The module is ``torchvision.ops.FeaturePyramidNetwork`` itself (same parameter names:
``fpn.inner_blocks.i.0.*``, ``fpn.layer_blocks.i.0.*``), with ``LastLevelMaxPool`` adding a
stride-2 max-pooled extra level on top, as torchvision's detection backbones do.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

import attrs
import torch
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from anchorage.core import injected
from anchorage.core.interfaces import FeatureSpec, Neck
from anchorage.core.registry import NECKS

_EXAMPLE_IN = (
    FeatureSpec("c2", 8, 4),
    FeatureSpec("c3", 16, 8),
    FeatureSpec("c4", 24, 16),
    FeatureSpec("c5", 32, 32),
)


@NECKS.register(
    "fpn",
    examples=(
        {"in_feature_info": _EXAMPLE_IN, "out_channels": 16},
        {"in_feature_info": _EXAMPLE_IN[1:], "out_channels": 8, "extra_block": "none"},
    ),
)
class FPN(Neck):
    """Top-down FPN over the backbone's levels, plus an optional max-pooled extra level.

    ``forward(features)``: the backbone's dict (keys and channels as in ``in_feature_info``,
    fine → coarse). Returns ``dict`` fine → coarse: ``p<k>`` for each input level (the level
    index k = log2(stride)), then ``p<k+1>`` from ``LastLevelMaxPool`` (max-pool, kernel 1,
    stride 2 of the coarsest output) when ``extra_block: maxpool``. All ``[B,out_channels,...]``.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        in_feature_info: tuple[FeatureSpec, ...] = injected()
        out_channels: int = attrs.field(default=256, validator=attrs.validators.gt(0))
        extra_block: Literal["maxpool", "none"] = "maxpool"

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        info = list(cfg.in_feature_info)
        if not info:
            raise ValueError("fpn needs at least one input level (in_feature_info is empty)")
        self.in_feature_info = info
        self.fpn = FeaturePyramidNetwork(
            in_channels_list=[f.channels for f in info],
            out_channels=cfg.out_channels,
            extra_blocks=LastLevelMaxPool() if cfg.extra_block == "maxpool" else None,
        )
        names = [f"p{_level(f.stride)}" for f in info]
        strides = [f.stride for f in info]
        if cfg.extra_block == "maxpool":
            names.append(f"p{_level(info[-1].stride) + 1}")
            strides.append(info[-1].stride * 2)
        self.feature_info = [FeatureSpec(n, cfg.out_channels, s) for n, s in zip(names, strides)]

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = OrderedDict((f.name, features[f.name]) for f in self.in_feature_info)
        out = self.fpn(x)
        return {spec.name: t for spec, t in zip(self.feature_info, out.values())}


def _level(stride: int) -> int:
    return max(stride.bit_length() - 1, 0)
