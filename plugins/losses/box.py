"""Per-anchor box-regression losses (role ``box_loss``): ``smooth_l1``, ``l1``, ``giou``, ``diou``.

Each is ``forward(deltas [B,A,4], targets: DenseTargets) -> [B,A]``: the loss of every anchor,
summed over its coordinates, finite everywhere; the dense loss that owns it keeps the positive
anchors and normalises. ``smooth_l1`` and ``l1`` compare the deltas with the encoded targets;
``giou`` and ``diou`` decode the deltas with the model's box coder and compare boxes
(``torchvision.ops.generalized_box_iou_loss`` / ``distance_box_iou_loss``).
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torchvision.ops import distance_box_iou_loss, generalized_box_iou_loss

from anchorage.core.interfaces import BoxLoss, DenseTargets
from anchorage.core.registry import LOSSES


@LOSSES.register("smooth_l1", examples=({}, {"beta": 0.11}))
class SmoothL1BoxLoss(BoxLoss):
    """Smooth L1 (Huber, ``beta``) between deltas and encoded targets (SSD: beta 1)."""

    @attrs.frozen(kw_only=True)
    class Config:
        beta: float = attrs.field(default=1.0, validator=attrs.validators.ge(0.0))

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.beta = cfg.beta

    def forward(self, deltas: torch.Tensor, targets: DenseTargets) -> torch.Tensor:
        loss = F.smooth_l1_loss(deltas, targets.box_targets, reduction="none", beta=self.beta)
        return loss.sum(dim=-1)


@LOSSES.register("l1")
class L1BoxLoss(BoxLoss):
    """L1 distance between deltas and encoded targets (torchvision RetinaNet's default)."""

    @attrs.frozen(kw_only=True)
    class Config:
        pass

    def __init__(self, cfg: Config) -> None:
        super().__init__()

    def forward(self, deltas: torch.Tensor, targets: DenseTargets) -> torch.Tensor:
        return (deltas - targets.box_targets).abs().sum(dim=-1)


class _DecodedBoxLoss(BoxLoss):
    """IoU-family losses on decoded boxes vs the matched gt boxes (float32 whatever autocast)."""

    @attrs.frozen(kw_only=True)
    class Config:
        eps: float = attrs.field(default=1e-7, validator=attrs.validators.gt(0.0))

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.eps = cfg.eps

    def forward(self, deltas: torch.Tensor, targets: DenseTargets) -> torch.Tensor:
        boxes = targets.decode(deltas.float())
        loss = self.pairwise(boxes.flatten(0, -2), targets.boxes.float().flatten(0, -2))
        return loss.view(boxes.shape[:-1])

    def pairwise(self, boxes: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@LOSSES.register("giou", examples=({},))
class GIoUBoxLoss(_DecodedBoxLoss):
    """``1 − GIoU`` of decoded and matched gt boxes (``generalized_box_iou_loss``)."""

    def pairwise(self, boxes: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        return generalized_box_iou_loss(boxes, gt, reduction="none", eps=self.eps)


@LOSSES.register("diou", examples=({},))
class DIoUBoxLoss(_DecodedBoxLoss):
    """``1 − DIoU`` of decoded and matched gt boxes (``distance_box_iou_loss``)."""

    def pairwise(self, boxes: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        return distance_box_iou_loss(boxes, gt, reduction="none", eps=self.eps)
