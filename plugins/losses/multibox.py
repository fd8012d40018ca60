"""Single-shot detector losses over assigned anchor targets: ``multibox`` and ``masked_l1``.

Both take the head's predictions and the targets a single-shot model assigns per anchor:

- ``predictions``: ``cls_logits [B,A,C+1]`` (column 0 = background), ``bbox_deltas [B,A,4]``.
- ``cls_targets``: int64 ``[B,A]``: class 1..C for positive anchors, 0 background, -1 ignore.
- ``box_targets``: float ``[B,A,4]`` encoded regression targets (read at positives only).

They return ``loss_classification`` and ``loss_bbox_regression`` (scalars, finite when
images have no boxes).
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F

from anchorage.core.interfaces import Loss
from anchorage.core.registry import LOSSES


def _check(predictions: dict[str, torch.Tensor], cls_targets: torch.Tensor) -> None:
    logits = predictions["cls_logits"]
    if (
        logits.shape[:2] != cls_targets.shape
        or predictions["bbox_deltas"].shape[:2] != cls_targets.shape
    ):
        raise ValueError(
            f"loss: predictions {tuple(logits.shape)} / {tuple(predictions['bbox_deltas'].shape)} "
            f"do not fit targets {tuple(cls_targets.shape)} (anchors of head and generator differ?)"
        )


@LOSSES.register("multibox", examples=({}, {"neg_pos_ratio": 2.0, "smooth_l1_beta": 0.5}))
class MultiboxLoss(Loss):
    """SSD's loss: softmax cross-entropy with hard-negative mining + smooth L1 on positives.

    Numerics of torchvision ``SSD.compute_loss``: per image the ``neg_pos_ratio × #positives``
    background anchors with the largest cross-entropy are the negatives; both terms are sums
    divided by the number of positives in the batch (at least 1). Ignored anchors (-1) are
    neither positive nor negative. An image without positives contributes nothing (its
    negatives are not mined, as in torchvision), so the losses stay finite.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        neg_pos_ratio: float = attrs.field(default=3.0, validator=attrs.validators.ge(0.0))
        smooth_l1_beta: float = attrs.field(default=1.0, validator=attrs.validators.ge(0.0))

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(
        self,
        predictions: dict[str, torch.Tensor],
        cls_targets: torch.Tensor,
        box_targets: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        _check(predictions, cls_targets)
        logits, deltas = predictions["cls_logits"], predictions["bbox_deltas"]
        positive = cls_targets > 0
        normaliser = positive.sum().clamp(min=1)
        box_loss = F.smooth_l1_loss(
            deltas[positive], box_targets[positive], reduction="sum", beta=self.cfg.smooth_l1_beta
        )
        ce = F.cross_entropy(
            logits.flatten(0, 1), cls_targets.clamp(min=0).flatten(), reduction="none"
        ).view_as(cls_targets)
        negative = self._hard_negatives(ce, cls_targets)
        cls_loss = ce[positive].sum() + ce[negative].sum()
        return {
            "loss_classification": cls_loss / normaliser,
            "loss_bbox_regression": box_loss / normaliser,
        }

    def _hard_negatives(self, ce: torch.Tensor, cls_targets: torch.Tensor) -> torch.Tensor:
        """bool ``[B,A]``: per image the ``ratio × #pos`` background anchors of highest loss."""
        candidates = cls_targets == 0
        num_negative = self.cfg.neg_pos_ratio * (cls_targets > 0).sum(1, keepdim=True)
        ranked = ce.detach().masked_fill(~candidates, float("-inf"))
        _, order = ranked.sort(1, descending=True)
        rank = order.sort(1)[1]
        return (rank < num_negative) & candidates


@LOSSES.register("masked_l1", examples=({}, {"bbox_weight": 2.0}))
class MaskedL1Loss(Loss):
    """d2l TinySSD's loss: cross-entropy over all anchors + L1 on positive anchors only.

    ``loss_classification``: mean cross-entropy over the non-ignored anchors of the batch.
    ``loss_bbox_regression``: ``bbox_weight ×`` the L1 distance of positive anchors' deltas,
    averaged over all ``B·A·4`` coordinates (background coordinates count as zero, as d2l's
    ``bbox_masks`` do).
    """

    @attrs.frozen(kw_only=True)
    class Config:
        bbox_weight: float = attrs.field(default=1.0, validator=attrs.validators.ge(0.0))

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(
        self,
        predictions: dict[str, torch.Tensor],
        cls_targets: torch.Tensor,
        box_targets: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        _check(predictions, cls_targets)
        logits, deltas = predictions["cls_logits"], predictions["bbox_deltas"]
        ce = F.cross_entropy(
            logits.flatten(0, 1), cls_targets.flatten(), ignore_index=-1, reduction="sum"
        )
        counted = (cls_targets >= 0).sum().clamp(min=1)
        mask = (cls_targets > 0).unsqueeze(-1)
        l1 = (deltas - box_targets).abs().masked_fill(~mask, 0.0)
        return {
            "loss_classification": ce / counted,
            "loss_bbox_regression": self.cfg.bbox_weight * l1.sum() / deltas.numel(),
        }
