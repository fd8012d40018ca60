"""``set_criterion``: the DETR / Deformable DETR loss of one-to-one matched queries (``SetLoss``).

For every decoder layer: a classification term over all queries (cross-entropy with a
no-object class, DETR; or sigmoid focal loss, Deformable DETR) and two box terms over the
matched queries (L1 on ``cxcywh``, ``1 − GIoU`` on ``xyxy``), each normalised by the number of
gt boxes in the batch (averaged over DDP ranks). Vectorized over the padded batch: the
matched gt per query is gathered, unmatched queries are masked, nothing waits for the device.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torchvision.ops import box_convert, generalized_box_iou, sigmoid_focal_loss

from anchorage.core.host_sync import from_host
from anchorage.core.interfaces import Assignment, GroundTruth, SetLoss
from anchorage.core.interfaces.matching import gather_rows
from anchorage.core.interfaces.set_prediction import EncoderMatch
from anchorage.core.registry import LOSSES
from anchorage.plugins.losses.multibox import class_targets

_weight = attrs.validators.ge(0.0)
# The target of unmatched queries' (masked) box terms: any box with area keeps GIoU finite.
_UNIT_BOX = (0.0, 0.0, 1.0, 1.0)


@LOSSES.register(
    "set_criterion",
    examples=(
        {},
        {"classification": "focal", "class_weight": 2.0},
        {"classification": "focal", "background_column": True, "no_object_weight": 0.5},
    ),
)
class SetCriterion(SetLoss):
    """DETR's set criterion (``classification: cross_entropy``) or Deformable DETR's (``focal``).

    ``forward(layers, assignments, gt)``: ``layers`` the per-layer predictions, the last layer
    last (``logits [B,Q,K]``, ``boxes [B,Q,4]`` cxcywh 0..1); ``assignments`` one
    ``Assignment`` per layer (``matched [B,Q]``: gt index, or a negative value for no object;
    ``weights`` are not read); ``gt`` the normalised ``GroundTruth`` (``boxes [B,G,4]`` xyxy
    0..1, ``labels [B,G]`` in 1..C). Per layer, with N = the valid gt boxes of the batch
    (summed over DDP ranks and divided by the world size, at least 1; a tensor, never read
    on the host):

    - ``loss_classification``: ``class_weight ×`` either the cross-entropy over all B·Q
      queries, target 0 (no object) for unmatched queries, class weight ``no_object_weight``
      on column 0 and 1 elsewhere, averaged as torch's weighted ``cross_entropy`` does (DETR's
      ``eos_coef``; logits ``[B,Q,C+1]``); or ``torchvision.ops.sigmoid_focal_loss``
      (``focal_alpha``, ``focal_gamma``) against one-hot targets summed over queries and
      classes, / N (Deformable DETR; logits ``[B,Q,C]``, or ``[B,Q,C+1]`` with
      ``background_column: true``, column 0 then a class that is never a target);
    - ``loss_bbox_l1``: ``l1_weight ×`` the L1 distance of matched boxes (cxcywh), summed / N;
    - ``loss_giou``: ``giou_weight ×`` the sum of ``1 − GIoU`` (xyxy) of matched boxes / N.

    Auxiliary layer i (``layers[i]``, i < L−1) gives the same terms named with ``_d{i}``.
    ``encoder`` (a two-stage model's ``EncoderMatch``: ``logits [B,S,K]``, ``boxes [B,S,4]``,
    ``matched [B,S]``, class-agnostic gt) gives them once more named with ``_enc``, against its
    gt's labels (all 1) and with the same N and weights (the paper's encoder loss).
    Finite, with a gradient path to every layer's logits and boxes, when images (or the whole
    batch) have no box.

    Query groups (Group DETR) need nothing here: the skeleton passes G copies of each image
    (its groups folded into the batch, the gt repeated), so N counts G copies of every box and
    each term is the mean of the groups' one-group terms (exactly so when the batch has a box;
    with none at all N is clamped to 1 and the focal term is their sum).
    """

    @attrs.frozen(kw_only=True)
    class Config:
        classification: Literal["cross_entropy", "focal"] = "cross_entropy"
        no_object_weight: float = attrs.field(default=0.1, validator=attrs.validators.gt(0.0))
        focal_alpha: float = attrs.field(
            default=0.25, validator=[attrs.validators.ge(-1.0), attrs.validators.le(1.0)]
        )
        focal_gamma: float = attrs.field(default=2.0, validator=attrs.validators.ge(0.0))
        class_weight: float = attrs.field(default=1.0, validator=_weight)
        l1_weight: float = attrs.field(default=5.0, validator=_weight)
        giou_weight: float = attrs.field(default=2.0, validator=_weight)
        background_column: bool | None = None

        def __attrs_post_init__(self) -> None:
            if self.classification == "cross_entropy" and self.background_column is False:
                raise ValueError(
                    "classification 'cross_entropy' needs the no-object column 0 "
                    "(background_column: true or unset), got background_column: false"
                )

    @classmethod
    def background_column(cls, cfg: Any) -> bool:
        """``cfg.background_column`` when set, else True for cross-entropy (``[B,Q,C+1]``,
        column 0 no-object) and False for focal (``[B,Q,C]``)."""
        value = getattr(cfg, "background_column", None)
        if value is not None:
            return bool(value)
        return getattr(cfg, "classification", "cross_entropy") == "cross_entropy"

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.with_background = self.background_column(cfg)

    def forward(
        self,
        layers: list[dict[str, torch.Tensor]],
        assignments: list[Assignment],
        gt: GroundTruth,
        encoder: EncoderMatch | None = None,
    ) -> dict[str, torch.Tensor]:
        if not layers or len(layers) != len(assignments):
            raise ValueError(
                f"set_criterion: expected one assignment per layer (at least one layer), got "
                f"{len(layers)} layers and {len(assignments)} assignments"
            )
        num_boxes = self.num_boxes(gt)
        out: dict[str, torch.Tensor] = {}
        last = len(layers) - 1
        for i, (layer, assignment) in enumerate(zip(layers, assignments)):
            suffix = "" if i == last else f"_d{i}"
            terms = self.layer_terms(layer, assignment.matched, gt, num_boxes)
            out.update({f"{name}{suffix}": value for name, value in terms.items()})
        if encoder is not None:
            matched = encoder.assignment.matched
            terms = self.layer_terms(encoder.predictions, matched, encoder.gt, num_boxes)
            out.update({f"{name}_enc": value for name, value in terms.items()})
        return out

    def num_boxes(self, gt: GroundTruth) -> torch.Tensor:
        """float scalar: valid gt boxes in the batch, averaged over DDP ranks, at least 1."""
        count = gt.valid.sum().to(torch.float32)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(count)
            count = count / dist.get_world_size()
        return count.clamp(min=1)

    def layer_terms(
        self,
        layer: dict[str, torch.Tensor],
        matched: torch.Tensor,
        gt: GroundTruth,
        num_boxes: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """The three weighted terms of one layer (``matched [B,Q]``, ``num_boxes`` scalar)."""
        logits, boxes = _check_layer(layer, matched)
        positive = matched >= 0
        labels = torch.where(positive, gather_rows(gt.labels, matched), 0)
        l1, giou = _box_terms(boxes, gather_rows(gt.boxes, matched), positive)
        return {
            "loss_classification": self.cfg.class_weight
            * self.classification(logits, labels, num_boxes),
            "loss_bbox_l1": self.cfg.l1_weight * l1 / num_boxes,
            "loss_giou": self.cfg.giou_weight * giou / num_boxes,
        }

    def classification(
        self, logits: torch.Tensor, labels: torch.Tensor, num_boxes: torch.Tensor
    ) -> torch.Tensor:
        """Unweighted classification term of ``logits [B,Q,K]`` for ``labels [B,Q]`` (0 = no
        object, else 1..C)."""
        k = logits.shape[-1]
        if self.cfg.classification == "cross_entropy":
            no_object = logits.new_full((1,), self.cfg.no_object_weight)
            weight = torch.cat([no_object, logits.new_ones(k - 1)])
            return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), weight=weight)
        if self.with_background:
            onehot = class_targets(labels, k - 1, logits)
        else:
            onehot = class_targets(labels, k, logits)[..., 1:]
        focal = sigmoid_focal_loss(
            logits, onehot, alpha=self.cfg.focal_alpha, gamma=self.cfg.focal_gamma, reduction="sum"
        )
        return focal / num_boxes


def _check_layer(
    layer: dict[str, torch.Tensor], matched: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    logits, boxes = layer.get("logits"), layer.get("boxes")
    if logits is None or boxes is None:
        raise ValueError(
            f"set_criterion: a layer holds 'logits' [B,Q,K] and 'boxes' [B,Q,4], got keys "
            f"{sorted(layer)}"
        )
    if logits.dim() != 3 or logits.shape[:2] != matched.shape or boxes.shape != (*matched.shape, 4):
        raise ValueError(
            f"set_criterion: logits {tuple(logits.shape)} and boxes {tuple(boxes.shape)} do not "
            f"fit the assignment's matched {tuple(matched.shape)} ([B,Q,K], [B,Q,4], [B,Q])"
        )
    return logits.float(), boxes.float()  # float32 whatever autocast


def _box_terms(
    boxes: torch.Tensor, target_xyxy: torch.Tensor, positive: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed L1 (cxcywh) and ``1 − GIoU`` (xyxy) of matched queries (``positive [B,Q]``):
    ``boxes [B,Q,4]`` cxcywh, ``target_xyxy [B,Q,4]`` each query's gathered gt box."""
    mask = positive[..., None]
    unit = from_host(_UNIT_BOX, dtype=target_xyxy.dtype, device=target_xyxy.device)
    target_xyxy = torch.where(mask, target_xyxy, unit)
    l1 = (boxes - box_convert(target_xyxy, "xyxy", "cxcywh")).abs()
    pairs = generalized_box_iou(
        box_convert(boxes, "cxcywh", "xyxy")[..., None, :], target_xyxy[..., None, :]
    )  # [B,Q,1,1]: each query with its own target
    giou = 1 - pairs[..., 0, 0]
    return torch.where(mask, l1, 0.0).sum(), torch.where(positive, giou, 0.0).sum()
