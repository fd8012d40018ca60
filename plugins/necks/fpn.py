"""Feature Pyramid Network neck (``fpn``), torchvision's ``FeaturePyramidNetwork``.

The module is ``torchvision.ops.FeaturePyramidNetwork`` itself (same parameter names:
``fpn.inner_blocks.i.0.*``, ``fpn.layer_blocks.i.0.*``), with torchvision's extra blocks on top:
``LastLevelMaxPool`` (a stride-2 max-pooled level, R-CNN) or ``LastLevelP6P7`` (two stride-2
3×3 convolutions, RetinaNet / FCOS; parameters ``fpn.extra_blocks.p6.*``, ``.p7.*``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

import attrs
import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

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
        {"in_feature_info": _EXAMPLE_IN[1:], "out_channels": 8, "extra_block": "p6p7"},
        {"in_feature_info": _EXAMPLE_IN[1:], "out_channels": 8, "extra_block": "p6p7_c5"},
    ),
)
class FPN(Neck):
    """Top-down FPN over the backbone's levels, plus optional extra levels.

    ``forward(features)``: the backbone's dict (keys and channels as in ``in_feature_info``,
    fine → coarse). Returns ``dict`` fine → coarse: ``p<k>`` for each input level (the level
    index k = log2(stride)), then the extra levels of ``extra_block``:

    - ``maxpool``: ``p<k+1>`` from ``LastLevelMaxPool`` (max-pool, kernel 1, stride 2 of the
      coarsest output);
    - ``p6p7``: ``p<k+1>``, ``p<k+2>`` from ``LastLevelP6P7(out_channels, out_channels)``
      (torchvision RetinaNet v1 / FCOS: P6 from the coarsest FPN output);
    - ``p6p7_c5``: the same from the coarsest *input* level (torchvision RetinaNet v2:
      ``LastLevelP6P7(C5 channels, out_channels)``; torchvision uses P5 when those are equal);
    - ``none``.

    All outputs ``[B,out_channels,...]``.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        in_feature_info: tuple[FeatureSpec, ...] = injected()
        out_channels: int = attrs.field(default=256, validator=attrs.validators.gt(0))
        extra_block: Literal["maxpool", "p6p7", "p6p7_c5", "none"] = "maxpool"

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        info = list(cfg.in_feature_info)
        if not info:
            raise ValueError("fpn needs at least one input level (in_feature_info is empty)")
        self.in_feature_info = info
        self.fpn = FeaturePyramidNetwork(
            in_channels_list=[f.channels for f in info],
            out_channels=cfg.out_channels,
            extra_blocks=_extra_block(cfg.extra_block, info[-1].channels, cfg.out_channels),
        )
        names = [f"p{_level(f.stride)}" for f in info]
        strides = [f.stride for f in info]
        extra = {"maxpool": 1, "p6p7": 2, "p6p7_c5": 2, "none": 0}[cfg.extra_block]
        for i in range(1, extra + 1):
            names.append(f"p{_level(info[-1].stride) + i}")
            strides.append(info[-1].stride * 2**i)
        self.feature_info = [FeatureSpec(n, cfg.out_channels, s) for n, s in zip(names, strides)]

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = OrderedDict((f.name, features[f.name]) for f in self.in_feature_info)
        out = self.fpn(x)
        return {spec.name: t for spec, t in zip(self.feature_info, out.values())}


def _extra_block(kind: str, coarsest_channels: int, out_channels: int) -> nn.Module | None:
    if kind == "maxpool":
        return LastLevelMaxPool()
    if kind == "p6p7":
        return LastLevelP6P7(out_channels, out_channels)
    if kind == "p6p7_c5":
        return LastLevelP6P7(coarsest_channels, out_channels)
    return None


def _level(stride: int) -> int:
    return max(stride.bit_length() - 1, 0)
