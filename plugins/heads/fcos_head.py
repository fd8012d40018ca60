"""``fcos_head``: FCOS's class, box and centerness subnets (torchvision ``FCOSHead``).

The subnets are torchvision's ``FCOSClassificationHead`` / ``FCOSRegressionHead`` under the
same attribute names, so a torchvision ``FCOS``'s ``head.*`` weights load as they are
(``head.classification_head.conv.0.weight``, ``head.regression_head.bbox_ctrness.weight``,
...). Each location predicts one box as distances to its four sides (``ltrb`` box coding,
ReLU-ed), a centerness logit and sigmoid class logits with one column per label value 0..C.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torchvision.models.detection.fcos import FCOSClassificationHead, FCOSRegressionHead

from anchorage.core.interfaces import DenseHead, DenseHeadConfig
from anchorage.core.registry import HEADS
from anchorage.plugins.heads.retinanet_head import shared_channels


@HEADS.register(
    "fcos_head",
    examples=({"in_channels": (32, 32), "num_anchors": (1, 1), "num_classes": 3},),
)
class FCOSHead(DenseHead):
    """``num_convs`` 3×3 conv + GroupNorm(32) + ReLU per branch, then the predictors.

    ``forward(features)``: dict of ``[B, c, h_l, w_l]`` fine → coarse. Returns
    ``cls_logits [B,A,C+1]`` (column = label), ``bbox_deltas [B,A,4]`` (non-negative ``ltrb``
    distances in units of the anchor size) and ``centerness [B,A,1]`` (logit), location-major.
    ``in_channels`` (equal on every level, a multiple of 32), ``num_anchors`` (1 per location)
    and ``num_classes`` (C) are injected.
    """

    prediction_keys = {"centerness": (1,)}

    @classmethod
    def background_column(cls, cfg: Any) -> bool:
        return True

    @attrs.frozen(kw_only=True)
    class Config(DenseHeadConfig):
        num_convs: int = attrs.field(default=4, validator=attrs.validators.ge(0))
        prior_prob: float = attrs.field(
            default=0.01, validator=[attrs.validators.gt(0.0), attrs.validators.lt(1.0)]
        )

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        channels = shared_channels("fcos_head", cfg.in_channels, cfg.num_anchors)
        if channels % 32:
            raise ValueError(
                f"fcos_head: GroupNorm(32) needs channels divisible by 32, got {channels}"
            )
        anchors = cfg.num_anchors[0]
        self.num_levels = len(cfg.in_channels)
        self.classification_head = FCOSClassificationHead(
            channels, anchors, cfg.num_classes + 1, cfg.num_convs, cfg.prior_prob
        )
        self.regression_head = FCOSRegressionHead(channels, anchors, cfg.num_convs)

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        maps = list(features.values())
        if len(maps) != self.num_levels:
            raise ValueError(f"fcos_head: built for {self.num_levels} levels, got {len(maps)}")
        boxes, centerness = self.regression_head(maps)
        return {
            "cls_logits": self.classification_head(maps),
            "bbox_deltas": boxes,
            "centerness": centerness,
        }
