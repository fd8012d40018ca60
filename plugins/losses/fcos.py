"""``fcos``: FCOS's loss — sigmoid focal classification, a box loss and centerness BCE.

torchvision ``FCOSHead.compute_loss`` numerics: every term is a sum divided by the batch's
positives (at least 1).

- ``loss_classification``: ``torchvision.ops.sigmoid_focal_loss`` against one-hot labels over
  every non-ignored anchor. With ``background_column: true`` the logits are torchvision's
  ``[B,A,C+1]`` layout (column j = label j) and column 0 is kept as a class that is never a
  target, exactly as torchvision sums it; otherwise logits are ``[B,A,C]``.
- ``loss_bbox_regression``: the ``box_loss`` component (default ``giou`` on boxes decoded by
  the model's coder) on positives.
- ``loss_bbox_ctrness``: binary cross-entropy of ``centerness [B,A,1]`` logits on positives
  against ``sqrt(min(l,r)/max(l,r) · min(t,b)/max(t,b))``, with ``l, t, r, b`` the distances
  from the anchor's centre to the sides of its matched gt box. They are measured on the boxes,
  not read from the encoded targets, so the target does not depend on the box coder (with the
  ``ltrb`` coder, which divides all four by the anchor's size, the ratios are the same); a
  centre outside its box (possible with an IoU matcher) gets centerness 0.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from anchorage.core.interfaces import DenseTargets
from anchorage.core.registry import LOSSES
from anchorage.plugins.losses.multibox import WithBoxLoss, box_loss_field, class_targets


def centerness_target(ltrb: torch.Tensor) -> torch.Tensor:
    """``[...,4]`` left/top/right/bottom distances → ``[...]`` FCOS centerness in 0..1.

    Negative distances (a point outside its box) count as 0, so such a point has centerness 0
    rather than NaN."""
    ltrb = ltrb.clamp(min=0)
    lr, tb = ltrb[..., [0, 2]], ltrb[..., [1, 3]]
    tiny = torch.finfo(ltrb.dtype).tiny
    ratio = (lr.min(dim=-1).values / lr.max(dim=-1).values.clamp(min=tiny)) * (
        tb.min(dim=-1).values / tb.max(dim=-1).values.clamp(min=tiny)
    )
    return torch.sqrt(ratio)


def point_to_sides(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``[...,2]`` points and ``[...,4]`` xyxy boxes → ``[...,4]`` distances ``(l, t, r, b)``."""
    return torch.cat([points - boxes[..., :2], boxes[..., 2:] - points], dim=-1)


@LOSSES.register("fcos", examples=({}, {"background_column": True, "gamma": 1.5}))
class FCOSLoss(WithBoxLoss):
    """FCOS loss (module docstring); needs ``cls_logits``, ``bbox_deltas``, ``centerness``."""

    prediction_keys = {"centerness": (1,)}

    @attrs.frozen(kw_only=True)
    class Config:
        alpha: float = attrs.field(
            default=0.25, validator=[attrs.validators.ge(-1.0), attrs.validators.le(1.0)]
        )
        gamma: float = attrs.field(default=2.0, validator=attrs.validators.ge(0.0))
        background_column: bool = False
        box_loss: Any = box_loss_field({"type": "giou"})

    def forward(
        self, predictions: dict[str, torch.Tensor], targets: DenseTargets
    ) -> dict[str, torch.Tensor]:
        logits, labels = predictions["cls_logits"], targets.labels
        columns = targets.num_classes + (1 if self.cfg.background_column else 0)
        if logits.shape[:2] != labels.shape or logits.shape[-1] != columns:
            raise ValueError(
                f"fcos loss: cls_logits {tuple(logits.shape)} do not fit targets "
                f"{tuple(labels.shape)} with {columns} class columns (background_column: "
                f"{self.cfg.background_column})"
            )
        onehot = class_targets(labels, targets.num_classes, logits)
        if not self.cfg.background_column:
            onehot = onehot[..., 1:]
        focal = sigmoid_focal_loss(
            logits, onehot, alpha=self.cfg.alpha, gamma=self.cfg.gamma, reduction="none"
        ).sum(dim=-1)
        positive, n = targets.positive, targets.num_positive()
        box = self.box_loss(predictions["bbox_deltas"], targets)
        centres = targets.anchors.centres  # [A,2] / [B,A,2]
        ctr_target = centerness_target(point_to_sides(centres, targets.boxes))
        ctr = F.binary_cross_entropy_with_logits(
            predictions["centerness"].squeeze(-1), ctr_target, reduction="none"
        )
        return {
            "loss_classification": torch.where(labels >= 0, focal, 0.0).sum() / n,
            "loss_bbox_regression": torch.where(positive, box, 0.0).sum() / n,
            "loss_bbox_ctrness": torch.where(positive, ctr, 0.0).sum() / n,
        }
