"""``yolo_head``: YOLO's per-level 1×1 prediction convolution.

Per level ``l`` one 1×1 convolution with ``a_l · (5 + C)`` outputs: for each of the ``a_l``
anchor shapes of a cell, 4 box offsets ``(t_x, t_y, t_w, t_h)`` (decoded by ``yolo`` box
coding: sigmoid offsets in the cell, log-scale size vs the anchor shape), an objectness logit
and ``C`` class logits (sigmoid, no background column).
"""

from __future__ import annotations

import math

import attrs
import torch
from torch import nn

from anchorage.core.interfaces import DenseHead, DenseHeadConfig, ObjectnessLayout
from anchorage.core.registry import HEADS


@HEADS.register(
    "yolo_head",
    examples=({"in_channels": (8, 16), "num_anchors": (3, 2), "num_classes": 3},),
)
class YoloHead(ObjectnessLayout, DenseHead):
    """Per level a 1×1 conv to ``a_l·(5+C)`` channels, split into boxes, objectness, classes.

    ``forward(features)``: dict of ``[B, in_channels[l], h_l, w_l]`` fine → coarse. Returns
    ``bbox_deltas [B,A,4]`` (raw ``t_x, t_y, t_w, t_h``), ``objectness [B,A]`` and
    ``cls_logits [B,A,C]`` (logits), levels concatenated, location-major with a cell's
    ``a_l`` anchors together — ``yolo_anchors``' order. ``in_channels``, ``num_anchors`` and
    ``num_classes`` (C) are injected. Objectness and class biases start at
    ``log(prior / (1 - prior))`` so that early training is not swamped by negatives.
    """

    @attrs.frozen(kw_only=True)
    class Config(DenseHeadConfig):
        prior_prob: float = attrs.field(
            default=0.01, validator=[attrs.validators.gt(0.0), attrs.validators.lt(1.0)]
        )

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.num_outputs = 5 + cfg.num_classes
        pairs = cfg.levels("yolo_head")
        self.preds = nn.ModuleList(nn.Conv2d(c, a * self.num_outputs, 1) for c, a in pairs)
        bias = math.log(cfg.prior_prob / (1 - cfg.prior_prob))
        for conv, a in zip(self.preds, cfg.num_anchors):
            nn.init.normal_(conv.weight, std=0.01)
            b = conv.bias.detach().view(a, self.num_outputs)
            b.zero_()
            b[:, 4:] = bias

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        maps = list(features.values())
        if len(maps) != len(self.preds):
            raise ValueError(f"yolo_head: built for {len(self.preds)} levels, got {len(maps)}")
        out = []
        for conv, x in zip(self.preds, maps):
            y = conv(x)
            b, _, h, w = y.shape
            out.append(y.view(b, -1, self.num_outputs, h, w).permute(0, 3, 4, 1, 2))
        flat = torch.cat([y.reshape(y.shape[0], -1, self.num_outputs) for y in out], dim=1)
        return {
            "bbox_deltas": flat[..., :4],
            "objectness": flat[..., 4],
            "cls_logits": flat[..., 5:],
        }
