"""``yolo_neck``: YOLOv3's top-down neck (conv set → 1×1 → upsample → concatenate).

From the coarsest level down: a "conv set" (alternating 1×1 to ``c/2`` and 3×3 to ``c``
Darknet units, ``depth`` pairs) gives the level's output; a 1×1 unit halves it, nearest
upsampling brings it to the next finer level's size, and it is concatenated with that
level's backbone feature before the finer level's conv set.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from anchorage.core import injected
from anchorage.core.interfaces import FeatureSpec, Neck
from anchorage.core.registry import NECKS
from anchorage.plugins.backbones.darknet import conv_bn_act

_EXAMPLE_IN = (FeatureSpec("c3", 8, 8), FeatureSpec("c4", 16, 16), FeatureSpec("c5", 16, 32))


def _conv_set(cin: int, cout: int, depth: int) -> nn.Sequential:
    """``depth`` pairs of (1×1 to cout/2, 3×3 to cout) Darknet units."""
    hidden = max(cout // 2, 1)
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [conv_bn_act(cin if i == 0 else cout, hidden, 1), conv_bn_act(hidden, cout)]
    return nn.Sequential(*layers)


@NECKS.register(
    "yolo_neck",
    examples=(
        {"in_feature_info": _EXAMPLE_IN},
        {"in_feature_info": _EXAMPLE_IN[1:], "out_channels": (8, 12), "depth": 2},
    ),
)
class YoloNeck(Neck):
    """Top-down upsample-and-concatenate over the backbone's levels.

    ``forward(features)``: the backbone's dict (keys/channels of ``in_feature_info``, fine →
    coarse). Returns ``p<k>`` per input level (same strides, ``k = log2(stride)``), fine →
    coarse, ``[B, out_channels[l], h_l, w_l]``; ``out_channels`` defaults to the input's.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        in_feature_info: tuple[FeatureSpec, ...] = injected()
        out_channels: tuple[int, ...] | None = None
        depth: int = attrs.field(default=1, validator=attrs.validators.ge(1))

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        info = list(cfg.in_feature_info)
        outs = list(cfg.out_channels or [f.channels for f in info])
        if len(outs) != len(info) or min(outs) <= 0:
            raise ValueError(
                f"yolo_neck: out_channels needs one value > 0 per input level ({len(info)}), "
                f"got {outs}"
            )
        self.in_feature_info = info
        self.sets = nn.ModuleList()
        self.reduce = nn.ModuleList()
        carried = 0
        for level in reversed(range(len(info))):  # coarse → fine
            self.sets.append(_conv_set(info[level].channels + carried, outs[level], cfg.depth))
            carried = max(outs[level] // 2, 1)
            if level > 0:
                self.reduce.append(conv_bn_act(outs[level], carried, 1))
        self.feature_info = [
            FeatureSpec(f"p{max(f.stride.bit_length() - 1, 0)}", c, f.stride)
            for f, c in zip(info, outs)
        ]

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        maps = [features[f.name] for f in self.in_feature_info]
        outs: list[torch.Tensor] = []
        x = None
        for i, level in enumerate(reversed(range(len(maps)))):
            inp = maps[level]
            if x is not None:
                up = F.interpolate(self.reduce[i - 1](x), size=inp.shape[-2:], mode="nearest")
                inp = torch.cat([up, inp], dim=1)
            x = self.sets[i](inp)
            outs.append(x)
        return {spec.name: t for spec, t in zip(self.feature_info, reversed(outs))}
