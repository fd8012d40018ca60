"""``yolo``: YOLO's loss — objectness BCE, class BCE and a box term on positives.

``forward(predictions, targets)`` with the ``yolo_head``'s ``objectness [B,A]``,
``cls_logits [B,A,C]`` and ``bbox_deltas [B,A,4]`` and the ``DenseTargets`` of the
``yolo_grid`` matcher (``labels``: 1..C positive, 0 negative, -1 ignored — predictions that
already overlap a gt box). Terms, each a sum divided by the batch's positives (at least 1):

- ``loss_objectness``: binary cross-entropy of the objectness logits, target 1 on positives and
  0 on negatives, ignored anchors left out (``objectness_weight``);
- ``loss_classification``: binary cross-entropy of the C class logits against the one-hot
  label on positives (``class_weight``);
- ``loss_bbox_regression``: the ``box_loss`` component on positives (default ``giou`` on boxes
  decoded by the model's coder; ``smooth_l1`` compares the YOLO deltas) (``box_weight``).
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
import torch.nn.functional as F

from anchorage.core.interfaces import DenseTargets, ObjectnessLayout
from anchorage.core.registry import LOSSES
from anchorage.plugins.losses.multibox import WithBoxLoss, box_loss_field, class_targets

_weight = attrs.validators.ge(0.0)


@LOSSES.register("yolo", examples=({}, {"box_loss": {"type": "smooth_l1"}, "box_weight": 2.0}))
class YoloLoss(ObjectnessLayout, WithBoxLoss):
    """See the module docstring. Finite with no gt (only negatives then)."""

    @attrs.frozen(kw_only=True)
    class Config:
        box_loss: Any = box_loss_field({"type": "giou"})
        box_weight: float = attrs.field(default=1.0, validator=_weight)
        objectness_weight: float = attrs.field(default=1.0, validator=_weight)
        class_weight: float = attrs.field(default=1.0, validator=_weight)

    def forward(
        self, predictions: dict[str, torch.Tensor], targets: DenseTargets
    ) -> dict[str, torch.Tensor]:
        labels = targets.labels
        obj, logits = predictions["objectness"], predictions["cls_logits"]
        if obj.shape != labels.shape or logits.shape[-1] != targets.num_classes:
            raise ValueError(
                f"yolo loss: objectness {tuple(obj.shape)} / cls_logits {tuple(logits.shape)} do "
                f"not fit targets {tuple(labels.shape)} with C = {targets.num_classes}"
            )
        positive = targets.positive
        n = targets.num_positive()
        bce = F.binary_cross_entropy_with_logits(obj, positive.to(obj), reduction="none")
        objectness = torch.where(labels >= 0, bce, 0.0).sum()
        onehot = class_targets(labels, targets.num_classes, logits)[..., 1:]
        cls = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none").sum(-1)
        box = self.box_loss(predictions["bbox_deltas"], targets)
        return {
            "loss_objectness": self.cfg.objectness_weight * objectness / n,
            "loss_classification": self.cfg.class_weight
            * torch.where(positive, cls, 0.0).sum()
            / n,
            "loss_bbox_regression": self.cfg.box_weight * torch.where(positive, box, 0.0).sum() / n,
        }
