"""Dense-detector losses over ``DenseTargets``: ``multibox``, ``masked_l1`` and ``sigmoid_focal``.

Each is a ``DenseLoss``: ``forward(predictions, targets)`` with ``predictions`` the dense head's
``cls_logits [B,A,K]`` and ``bbox_deltas [B,A,4]`` and ``targets`` the ``DenseTargets``
(``labels [B,A]``: 1..C positive, 0 background, -1 ignore; encoded ``box_targets``; matched
``boxes``; ``decode``). They return ``loss_classification`` and ``loss_bbox_regression``
(scalars, finite when images have no boxes). ``multibox`` and ``sigmoid_focal`` delegate the box
term to a ``box_loss`` component (``smooth_l1``, ``l1``, ``giou``, ``diou``).
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from anchorage.core import component
from anchorage.core.build import build_child
from anchorage.core.interfaces import DenseLoss, DenseTargets
from anchorage.core.registry import LOSSES


def _check(predictions: dict[str, torch.Tensor], targets: DenseTargets) -> None:
    logits, labels = predictions["cls_logits"], targets.labels
    if logits.shape[:2] != labels.shape or predictions["bbox_deltas"].shape[:2] != labels.shape:
        raise ValueError(
            f"loss: predictions {tuple(logits.shape)} / {tuple(predictions['bbox_deltas'].shape)} "
            f"do not fit targets {tuple(labels.shape)} (anchors of head and generator differ?)"
        )


def box_loss_field(default: dict[str, Any]) -> Any:
    """A ``box_loss`` component field (role ``box_loss``) defaulting to ``default``."""
    return component("loss", role="box_loss", factory=lambda: dict(default))


class WithBoxLoss(DenseLoss):
    """A dense loss whose box term is its ``box_loss`` component (``cfg.box_loss``, declared
    with ``box_loss_field``), built as ``self.box_loss``; ``self.cfg`` is the config."""

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        self.cfg = cfg
        self.box_loss = build_child("loss", cfg.box_loss)

    def box_term(self, deltas: torch.Tensor, targets: DenseTargets) -> torch.Tensor:
        """float ``[B,A]``: the box loss of positives (× assignment weights), 0 elsewhere."""
        per_anchor = self.box_loss(deltas, targets)
        if targets.assignment.weights is not None:
            per_anchor = per_anchor * targets.assignment.weights
        return torch.where(targets.positive, per_anchor, 0.0)


@LOSSES.register("multibox", examples=({}, {"neg_pos_ratio": 2.0, "box_loss": {"type": "giou"}}))
class MultiboxLoss(WithBoxLoss):
    """SSD's loss: softmax cross-entropy with hard-negative mining + a box loss on positives.

    Numerics of torchvision ``SSD.compute_loss`` (with the default ``box_loss: smooth_l1``,
    beta 1): per image the ``neg_pos_ratio × #positives`` background anchors with the largest
    cross-entropy are the negatives; both terms are sums divided by the number of positives in
    the batch (at least 1). Ignored anchors (-1) are neither positive nor negative. An image
    without positives contributes nothing, so the losses stay finite. Logits ``[B,A,C+1]``.
    """

    @classmethod
    def background_column(cls, cfg: Any) -> bool:
        return True

    @attrs.frozen(kw_only=True)
    class Config:
        neg_pos_ratio: float = attrs.field(default=3.0, validator=attrs.validators.ge(0.0))
        box_loss: Any = box_loss_field({"type": "smooth_l1", "beta": 1.0})

    def forward(
        self, predictions: dict[str, torch.Tensor], targets: DenseTargets
    ) -> dict[str, torch.Tensor]:
        _check(predictions, targets)
        logits, cls_targets = predictions["cls_logits"], targets.labels
        normaliser = targets.num_positive()
        box = self.box_term(predictions["bbox_deltas"], targets).sum()
        ce = F.cross_entropy(
            logits.flatten(0, 1), cls_targets.clamp(min=0).flatten(), reduction="none"
        ).view_as(cls_targets)
        chosen = targets.positive | self._hard_negatives(ce, cls_targets)
        cls_loss = torch.where(chosen, ce, 0.0).sum()
        return {
            "loss_classification": cls_loss / normaliser,
            "loss_bbox_regression": box / normaliser,
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
class MaskedL1Loss(DenseLoss):
    """d2l TinySSD's loss: cross-entropy over all anchors + L1 on positive anchors only.

    ``loss_classification``: mean cross-entropy over the non-ignored anchors of the batch
    (logits ``[B,A,C+1]``). ``loss_bbox_regression``: ``bbox_weight ×`` the L1 distance of
    positive anchors' deltas to ``box_targets``, averaged over all ``B·A·4`` coordinates
    (background coordinates count as zero, as d2l's ``bbox_masks`` do).
    """

    @classmethod
    def background_column(cls, cfg: Any) -> bool:
        return True

    @attrs.frozen(kw_only=True)
    class Config:
        bbox_weight: float = attrs.field(default=1.0, validator=attrs.validators.ge(0.0))

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(
        self, predictions: dict[str, torch.Tensor], targets: DenseTargets
    ) -> dict[str, torch.Tensor]:
        _check(predictions, targets)
        logits, deltas, cls_targets = (
            predictions["cls_logits"],
            predictions["bbox_deltas"],
            targets.labels,
        )
        ce = F.cross_entropy(
            logits.flatten(0, 1), cls_targets.flatten(), ignore_index=-1, reduction="sum"
        )
        counted = (cls_targets >= 0).sum().clamp(min=1)
        mask = targets.positive.unsqueeze(-1)
        l1 = (deltas - targets.box_targets).abs().masked_fill(~mask, 0.0)
        return {
            "loss_classification": ce / counted,
            "loss_bbox_regression": self.cfg.bbox_weight * l1.sum() / deltas.numel(),
        }


def class_targets(labels: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """Sigmoid class targets ``[..., C+1]`` of ``labels [...]`` (column = label), in ``like``'s
    dtype and device; column 0 (background) and ignored anchors (label < 0) are all zeros.

    ``F.one_hot`` would check the label range on the host (a sync per call off CUDA) and
    build an int64 tensor first; one ``scatter_`` into the float zeros does neither.
    """
    out = like.new_zeros((*labels.shape, num_classes + 1))
    out.scatter_(-1, labels.clamp(min=0)[..., None], 1.0)
    out[..., 0] = 0
    return out


@LOSSES.register(
    "sigmoid_focal",
    examples=(
        {},
        {"normalize": "batch", "box_loss": {"type": "giou"}, "gamma": 1.5},
        {"background_column": True},
    ),
)
class SigmoidFocalLoss(WithBoxLoss):
    """RetinaNet's loss: sigmoid focal loss over the C class logits + a box loss on positives.

    Classification: ``torchvision.ops.sigmoid_focal_loss`` (``alpha``, ``gamma``) against one-hot
    targets (all zeros for background), summed over the non-ignored anchors. Logits are
    ``[B,A,C]``; with ``[B,A,C+1]`` (a softmax head's layout) column 0 is left out, unless
    ``background_column: true``: then column 0 is kept as a class that is never a target, as
    torchvision's RetinaNet sums it (its head has a column per label value 0..C). Box term:
    ``box_loss`` (default ``l1`` on encoded deltas, torchvision RetinaNet's) summed over
    positives. ``normalize: per_image`` divides each image's sums by its positives (at least 1)
    and averages over images (torchvision RetinaNet); ``batch`` divides by the batch's positives
    (torchvision FCOS).
    """

    @attrs.frozen(kw_only=True)
    class Config:
        alpha: float = attrs.field(
            default=0.25, validator=[attrs.validators.ge(-1.0), attrs.validators.le(1.0)]
        )
        gamma: float = attrs.field(default=2.0, validator=attrs.validators.ge(0.0))
        normalize: Literal["per_image", "batch"] = "per_image"
        background_column: bool = False
        box_loss: Any = box_loss_field({"type": "l1"})

    def forward(
        self, predictions: dict[str, torch.Tensor], targets: DenseTargets
    ) -> dict[str, torch.Tensor]:
        _check(predictions, targets)
        labels = targets.labels
        onehot = class_targets(labels, targets.num_classes, predictions["cls_logits"])
        if self.cfg.background_column:
            logits = self._with_background(predictions["cls_logits"], targets.num_classes)
        else:
            logits = self._class_logits(predictions["cls_logits"], targets.num_classes)
            onehot = onehot[..., 1:]
        focal = sigmoid_focal_loss(
            logits, onehot, alpha=self.cfg.alpha, gamma=self.cfg.gamma, reduction="none"
        ).sum(dim=-1)
        cls = torch.where(labels >= 0, focal, 0.0)
        box = self.box_term(predictions["bbox_deltas"], targets)
        if self.cfg.normalize == "batch":
            n = targets.num_positive()
            return {"loss_classification": cls.sum() / n, "loss_bbox_regression": box.sum() / n}
        per_image = targets.positive.sum(dim=1).clamp(min=1).to(cls.dtype)
        return {
            "loss_classification": (cls.sum(dim=1) / per_image).mean(),
            "loss_bbox_regression": (box.sum(dim=1) / per_image).mean(),
        }

    @staticmethod
    def _with_background(logits: torch.Tensor, num_classes: int) -> torch.Tensor:
        if logits.shape[-1] != num_classes + 1:
            raise ValueError(
                f"sigmoid_focal: cls_logits have {logits.shape[-1]} columns, expected C+1 = "
                f"{num_classes + 1} (background_column: true)"
            )
        return logits

    @staticmethod
    def _class_logits(logits: torch.Tensor, num_classes: int) -> torch.Tensor:
        if logits.shape[-1] == num_classes:
            return logits
        if logits.shape[-1] == num_classes + 1:
            return logits[..., 1:]
        raise ValueError(
            f"sigmoid_focal: cls_logits have {logits.shape[-1]} columns, expected C = "
            f"{num_classes} (or C+1 with a background column)"
        )
