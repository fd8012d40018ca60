"""Per-anchor box-regression losses (role ``box_loss``): ``smooth_l1``, ``l1``, ``giou``, ``diou``.

Each is ``forward(deltas [B,A,4], targets: DenseTargets) -> [B,A]``: the loss of every anchor,
summed over its coordinates, finite everywhere; the dense loss that owns it keeps the positive
anchors and normalises. ``smooth_l1`` and ``l1`` compare the deltas with the encoded targets;
``giou`` and ``diou`` decode the deltas with the model's box coder and compare boxes with
the numbers of ``torchvision.ops.generalized_box_iou_loss`` / ``distance_box_iou_loss``.
Those compute the intersection with a boolean mask (``intsct[mask] = ...``), a host-device
synchronisation on a GPU in every train step (forward and backward); here the intersection's
sides are clamped at zero instead, which gives the same values and gradients without a sync.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F

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
        inter, union = _inter_union(boxes, gt)
        (x1, y1, x2, y2), (gx1, gy1, gx2, gy2) = boxes.unbind(-1), gt.unbind(-1)
        hull = (torch.max(x2, gx2) - torch.min(x1, gx1)) * (torch.max(y2, gy2) - torch.min(y1, gy1))
        giou = inter / (union + self.eps) - (hull - union) / (hull + self.eps)
        return 1 - giou


@LOSSES.register("diou", examples=({},))
class DIoUBoxLoss(_DecodedBoxLoss):
    """``1 − DIoU`` of decoded and matched gt boxes (``distance_box_iou_loss``)."""

    def pairwise(self, boxes: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        inter, union = _inter_union(boxes, gt)
        (x1, y1, x2, y2), (gx1, gy1, gx2, gy2) = boxes.unbind(-1), gt.unbind(-1)
        diagonal = (
            (torch.max(x2, gx2) - torch.min(x1, gx1)) ** 2
            + (torch.max(y2, gy2) - torch.min(y1, gy1)) ** 2
            + self.eps
        )
        centres = ((x2 + x1) / 2 - (gx1 + gx2) / 2) ** 2 + ((y2 + y1) / 2 - (gy1 + gy2) / 2) ** 2
        return 1 - inter / (union + self.eps) + centres / diagonal


def _inter_union(boxes: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Intersection and union areas ``[N]`` of xyxy ``boxes [N,4]`` and ``gt [N,4]``, pair by
    pair (torchvision's ``_loss_inter_union`` without its boolean mask)."""
    (x1, y1, x2, y2), (gx1, gy1, gx2, gy2) = boxes.unbind(-1), gt.unbind(-1)
    width = (torch.min(x2, gx2) - torch.max(x1, gx1)).clamp(min=0)
    height = (torch.min(y2, gy2) - torch.max(y1, gy1)).clamp(min=0)
    inter = width * height
    return inter, (x2 - x1) * (y2 - y1) + (gx2 - gx1) * (gy2 - gy1) - inter
