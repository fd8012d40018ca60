"""Region Proposal Network head (``rpn_head``), torchvision's ``RPNHead`` layout.

A shared 3×3 conv (+ReLU) per level, then 1×1 convs for objectness (one logit per anchor) and
box deltas (4 per anchor). Parameter names match torchvision (``conv.0.0.*``,
``cls_logits.*``, ``bbox_pred.*``), weights N(0, 0.01), biases 0.
"""

from __future__ import annotations

import attrs
import torch
from torch import nn
from torchvision.ops import Conv2dNormActivation

from anchorage.core import injected
from anchorage.core.interfaces import roles
from anchorage.core.registry import HEADS


@HEADS.register("rpn_head", examples=({"in_channels": 8, "num_anchors": 3},))
class RPNHead(roles.RPNHead):
    """Objectness and box deltas for every anchor of every level.

    ``forward(features)``: dict fine → coarse of ``[B,in_channels,h_l,w_l]``. Returns
    ``objectness`` float ``[B,A]`` (logits) and ``bbox_deltas`` float ``[B,A,4]``, flattened
    level by level, row-major, anchor fastest (the grid anchor generator's order), and
    ``num_anchors_per_level`` (list of ints, not a tensor).
    """

    @attrs.frozen(kw_only=True)
    class Config:
        in_channels: int = injected()
        num_anchors: int = injected()
        conv_depth: int = attrs.field(default=1, validator=attrs.validators.ge(1))

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        c = cfg.in_channels
        convs = [Conv2dNormActivation(c, c, 3, norm_layer=None) for _ in range(cfg.conv_depth)]
        self.conv = nn.Sequential(*convs)
        self.cls_logits = nn.Conv2d(c, cfg.num_anchors, kernel_size=1, stride=1)
        self.bbox_pred = nn.Conv2d(c, cfg.num_anchors * 4, kernel_size=1, stride=1)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                if layer.bias is not None:
                    nn.init.constant_(layer.bias, 0)

    def forward(self, features: dict[str, torch.Tensor]) -> dict:
        logits, deltas, counts = [], [], []
        for x in features.values():
            t = self.conv(x)
            obj, reg = self.cls_logits(t), self.bbox_pred(t)
            b, a, h, w = obj.shape
            logits.append(obj.permute(0, 2, 3, 1).reshape(b, -1))
            deltas.append(reg.view(b, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, 4))
            counts.append(a * h * w)
        return {
            "objectness": torch.cat(logits, dim=1),
            "bbox_deltas": torch.cat(deltas, dim=1),
            "num_anchors_per_level": counts,
        }
