"""Classification and localization losses: ``classification_ce`` and ``box_l1_giou``.

- ``classification_ce``: softmax cross-entropy over ``[B,C]`` logits with label smoothing
  (``F.cross_entropy(label_smoothing=...)``; Szegedy et al., the notes' recipe), labels 1..C,
  images labelled 0 or -1 left out.
- ``box_l1_giou``: smooth-L1 on the normalised ``cxcywh`` box plus ``1 - GIoU``
  (``torchvision.ops.generalized_box_iou_loss``), the localization chapter's box loss.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torchvision.ops import box_convert, generalized_box_iou_loss

from anchorage.core.interfaces.classification import ClassificationLoss, LocalizationLoss
from anchorage.core.registry import LOSSES

_ge0 = attrs.validators.ge(0.0)


@LOSSES.register("classification_ce", examples=({}, {"label_smoothing": 0.1, "weight": 0.5}))
class ClassificationCE(ClassificationLoss):
    """Cross-entropy with label smoothing: ``{"loss_cls": weight × mean over counted images}``.

    ``forward(logits [B,C], labels [B])`` (labels 1..C; ≤ 0 not counted); 0 with a gradient
    path when no image counts. No host sync.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        label_smoothing: float = attrs.field(
            default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)]
        )
        weight: float = attrs.field(default=1.0, validator=_ge0)
        name: str = "cls"

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        index = labels.long() - 1  # column c - 1 scores label c; -1 / -2: not counted
        per_image = F.cross_entropy(
            logits.float(),
            index.clamp(min=0),
            label_smoothing=self.cfg.label_smoothing,
            reduction="none",
        )
        counted = index >= 0
        total = torch.where(counted, per_image, 0.0).sum() + 0.0 * logits.sum()
        loss = total / counted.sum().clamp(min=1)
        return {f"loss_{self.cfg.name}": self.cfg.weight * loss}


@LOSSES.register("box_l1_giou", examples=({}, {"l1_weight": 0.0, "giou_weight": 1.0}))
class BoxL1GIoU(LocalizationLoss):
    """``{"loss_box": l1_weight × smooth-L1, "loss_giou": giou_weight × (1 - GIoU)}``, means
    over the images with a box.

    ``forward(boxes [B,4] cxcywh 0..1, target [B,4] xyxy 0..1, valid [B])``; smooth-L1 compares
    ``cxcywh`` (``beta``); both terms 0 with a gradient path when no image is valid.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        l1_weight: float = attrs.field(default=5.0, validator=_ge0)
        giou_weight: float = attrs.field(default=2.0, validator=_ge0)
        beta: float = attrs.field(default=0.05, validator=_ge0)

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(
        self, boxes: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        boxes = boxes.float()
        target = torch.where(valid[:, None], target.float(), boxes.new_tensor([0, 0, 1, 1]))
        n = valid.sum().clamp(min=1)
        l1 = F.smooth_l1_loss(
            boxes, box_convert(target, "xyxy", "cxcywh"), beta=self.cfg.beta, reduction="none"
        ).sum(-1)
        xyxy = box_convert(boxes, "cxcywh", "xyxy")
        giou = generalized_box_iou_loss(xyxy, target, reduction="none")
        zero = 0.0 * boxes.sum()
        return {
            "loss_box": self.cfg.l1_weight * (torch.where(valid, l1, 0.0).sum() + zero) / n,
            "loss_giou": self.cfg.giou_weight * (torch.where(valid, giou, 0.0).sum() + zero) / n,
        }
