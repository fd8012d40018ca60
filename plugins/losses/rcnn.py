"""Two-stage detector losses (torchvision's ``rpn``/``roi_heads`` arithmetic).

- ``rpn_loss``: objectness BCE over the sampled anchors (mean) + smooth L1 (beta 1/9) over the
  sampled positives, summed and divided by the number of sampled anchors of the batch.
- ``fast_rcnn_loss``: cross-entropy over the sampled proposals (mean) + smooth L1 (beta 1/9)
  on the deltas of each positive's gt class, summed and divided by the number of proposals.
- ``mask_rcnn_loss``: per-pixel BCE on the mask logits of each positive's gt class (mean).

Every term is finite (zero, with a gradient path) when nothing was sampled or no positive
exists, where torchvision would divide by zero.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F

from anchorage.core.interfaces import roles
from anchorage.core.registry import LOSSES

_beta = attrs.validators.ge(0.0)


@LOSSES.register("rpn_loss", examples=({},))
class RPNLoss(roles.RPNLoss):
    """``forward(objectness, bbox_deltas, positive, negative, regression_targets)``.

    ``objectness`` float ``[B,A]`` logits, ``bbox_deltas`` and ``regression_targets`` float
    ``[B,A,4]`` (targets only read at positives), ``positive`` / ``negative`` bool ``[B,A]``
    (the sampler's choice). Returns ``loss_objectness`` and ``loss_rpn_box_reg`` (scalars).
    """

    @attrs.frozen(kw_only=True)
    class Config:
        smooth_l1_beta: float = attrs.field(default=1 / 9, validator=_beta)

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.beta = cfg.smooth_l1_beta

    def forward(
        self,
        objectness: torch.Tensor,
        bbox_deltas: torch.Tensor,
        positive: torch.Tensor,
        negative: torch.Tensor,
        regression_targets: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        sampled = positive | negative
        # Masks instead of boolean indexing: the sums need no host-side count (no GPU sync).
        count = sampled.sum().clamp(min=1)
        deltas_pos = _only_where(positive, bbox_deltas, regression_targets)
        box = F.smooth_l1_loss(bbox_deltas, deltas_pos, beta=self.beta, reduction="sum")
        obj = F.binary_cross_entropy_with_logits(
            objectness, positive.to(objectness.dtype), reduction="none"
        )
        obj = torch.where(sampled, obj, 0.0).sum() / count
        return {"loss_objectness": obj, "loss_rpn_box_reg": box / count}


def _only_where(keep: torch.Tensor, deltas: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Targets where ``keep`` ``[...]``, else the (detached) deltas themselves: a regression
    loss of (deltas, result) is then zero, with zero gradient, off ``keep``, whatever values
    (even inf or NaN) the targets hold there."""
    return torch.where(keep[..., None], targets, deltas.detach())


@LOSSES.register("fast_rcnn_loss", examples=({},))
class FastRCNNLoss(roles.RoIBoxLoss):
    """``forward(cls_logits, bbox_deltas, labels, regression_targets)``.

    ``cls_logits`` ``[R,C+1]``, ``bbox_deltas`` ``[R,(C+1)*4]``, ``labels`` int64 ``[R]`` (0 =
    background), ``regression_targets`` ``[R,4]`` (read at positives). Returns
    ``loss_classifier`` and ``loss_box_reg``.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        smooth_l1_beta: float = attrs.field(default=1 / 9, validator=_beta)

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.beta = cfg.smooth_l1_beta

    def forward(
        self,
        cls_logits: torch.Tensor,
        bbox_deltas: torch.Tensor,
        labels: torch.Tensor,
        regression_targets: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        r = labels.numel()
        if r == 0:
            zero = cls_logits.sum() * 0 + bbox_deltas.sum() * 0
            return {"loss_classifier": zero, "loss_box_reg": zero.clone()}
        cls = F.cross_entropy(cls_logits, labels)
        deltas = bbox_deltas.reshape(r, -1, 4)[torch.arange(r, device=labels.device), labels]
        targets = _only_where(labels > 0, deltas, regression_targets)
        box = F.smooth_l1_loss(deltas, targets, beta=self.beta, reduction="sum")
        return {"loss_classifier": cls, "loss_box_reg": box / r}


@LOSSES.register("mask_rcnn_loss", examples=({},))
class MaskRCNNLoss(roles.MaskLoss):
    """``forward(mask_logits, labels, mask_targets)``.

    ``mask_logits`` ``[P,C+1,M,M]`` for the positive proposals, ``labels`` int64 ``[P]`` (their
    gt class, 1..C), ``mask_targets`` float ``[P,M,M]`` in 0..1 (gt masks cropped and resized to
    each proposal). Returns ``loss_mask``.
    """

    def __init__(self, cfg: object) -> None:
        super().__init__()

    def forward(
        self, mask_logits: torch.Tensor, labels: torch.Tensor, mask_targets: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        if mask_targets.numel() == 0:
            return {"loss_mask": mask_logits.sum() * 0}
        if mask_targets.shape[-2:] != mask_logits.shape[-2:]:
            raise ValueError(
                f"mask_rcnn_loss: mask targets {tuple(mask_targets.shape)} do not fit mask "
                f"logits {tuple(mask_logits.shape)}"
            )
        picked = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels]
        return {"loss_mask": F.binary_cross_entropy_with_logits(picked, mask_targets)}
