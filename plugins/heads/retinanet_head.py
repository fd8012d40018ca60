"""``retinanet_head``: RetinaNet's shared class and box subnets (torchvision ``RetinaNetHead``).

The subnets are torchvision's own ``RetinaNetClassificationHead`` / ``RetinaNetRegressionHead``
under the same attribute names, so a torchvision ``RetinaNet``'s ``head.*`` weights load as
they are (``head.classification_head.conv.0.0.weight``, ``...cls_logits.weight``,
``head.regression_head.bbox_reg.weight``, ...). Class scoring is sigmoid; as in torchvision the
class logits have one column per label value 0..C (column ``l`` scores label ``l``; column 0
is never a positive target).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import attrs
import torch
from torch import nn
from torchvision.models.detection.retinanet import (
    RetinaNetClassificationHead,
    RetinaNetRegressionHead,
)

from anchorage.core.interfaces import DenseHead, DenseHeadConfig
from anchorage.core.registry import HEADS


def shared_channels(name: str, in_channels: tuple[int, ...], num_anchors: tuple[int, ...]) -> int:
    """The one channel count and anchor count every level must share; ValueError otherwise."""
    if len(set(in_channels)) != 1 or len(set(num_anchors)) != 1:
        raise ValueError(
            f"{name}: the subnets are shared across levels, so every level needs the same "
            f"channels and anchors per location; got channels {list(in_channels)}, anchors "
            f"{list(num_anchors)}"
        )
    return in_channels[0]


def norm_layer(norm: str) -> partial | None:
    """``group_norm`` → GroupNorm(32, c) (torchvision's v2 heads and FCOS); ``none`` → None."""
    return partial(nn.GroupNorm, 32) if norm == "group_norm" else None


@HEADS.register(
    "retinanet_head",
    examples=(
        {"in_channels": (32, 32, 32), "num_anchors": (9, 9, 9), "num_classes": 3},
        {"in_channels": (32, 32), "num_anchors": (3, 3), "num_classes": 2, "num_convs": 2},
    ),
)
class RetinaNetHead(DenseHead):
    """``num_convs`` (default 4) 3×3 conv + ReLU then a 3×3 predictor, for classes and for
    boxes, on every level.

    ``forward(features)``: dict of ``[B, c, h_l, w_l]`` fine → coarse. Returns
    ``cls_logits [B,A,C+1]`` (sigmoid logits, column = label) and ``bbox_deltas [B,A,4]``,
    location-major with a location's anchors together (torchvision's and ``grid_anchors``'
    order). ``in_channels``, ``num_anchors`` (equal on every level) and ``num_classes`` (C) are
    injected; ``norm: group_norm`` gives torchvision's ``retinanet_resnet50_fpn_v2`` head.
    """

    @classmethod
    def background_column(cls, cfg: Any) -> bool:
        return True

    @attrs.frozen(kw_only=True)
    class Config(DenseHeadConfig):
        prior_prob: float = attrs.field(
            default=0.01, validator=[attrs.validators.gt(0.0), attrs.validators.lt(1.0)]
        )
        norm: Literal["none", "group_norm"] = "none"
        num_convs: int = attrs.field(
            default=4, validator=[attrs.validators.ge(0), attrs.validators.le(4)]
        )

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        channels = shared_channels("retinanet_head", cfg.in_channels, cfg.num_anchors)
        anchors = cfg.num_anchors[0]
        self.num_levels = len(cfg.in_channels)
        self.classification_head = RetinaNetClassificationHead(
            channels, anchors, cfg.num_classes + 1, cfg.prior_prob, norm_layer(cfg.norm)
        )
        self.regression_head = RetinaNetRegressionHead(channels, anchors, norm_layer(cfg.norm))
        # torchvision builds four convs per subnet; a shallower head keeps its first ones, under
        # the same names (conv.0, conv.1, ...), so converted weights still load by name.
        for subnet in (self.classification_head, self.regression_head):
            subnet.conv = subnet.conv[: cfg.num_convs]

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        maps = list(features.values())
        if len(maps) != self.num_levels:
            raise ValueError(f"retinanet_head: built for {self.num_levels} levels, got {len(maps)}")
        return {
            "cls_logits": self.classification_head(maps),
            "bbox_deltas": self.regression_head(maps),
        }
