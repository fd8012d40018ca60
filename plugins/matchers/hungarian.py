"""``hungarian``: DETR's one-to-one matching of queries to ground truth (minimum-cost assignment).

The cost of every (query, gt) pair is computed for the whole padded batch on the predictions'
device; then the cost tensor is copied to the host once and
``scipy.optimize.linear_sum_assignment`` solves each image. That copy is the matcher's one
host-device synchronisation (an exact assignment solver has no batched GPU twin in torch);
its host-sync allow-list entry is ``("hungarian.py", "_solve")``. ``match_groups`` solves
several independent problems (e.g. a two-stage model's decoder layers and its encoder
proposals, each with its own Q) with one copy of all their costs. scipy is an optional
dependency (the ``detr`` extra), imported only when a batch is matched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import attrs
import numpy as np
import torch
from torchvision.ops import box_convert, generalized_box_iou

from anchorage.core.host_sync import from_host
from anchorage.core.interfaces import Anchors, Assignment, GroundTruth, Matcher
from anchorage.core.registry import MATCHERS

_weight = attrs.validators.ge(0.0)
_unit = [attrs.validators.ge(0.0), attrs.validators.le(1.0)]


@MATCHERS.register(
    "hungarian",
    examples=(
        {},
        {"class_cost": "focal", "class_weight": 2.0},
        {"class_cost": "focal", "background_column": True, "giou_weight": 0.0},
    ),
)
class HungarianMatcher(Matcher):
    """Minimum-cost one-to-one assignment of Q queries to the valid gt of each image (DETR).

    Cost of query q and gt g: ``class_weight · class + l1_weight · L1 + giou_weight · (−GIoU)``
    with

    - class (``class_cost``): ``softmax``: ``−p(gt class)``, the softmax over all K columns
      (DETR); ``focal``: ``α(1−p)^γ·(−log p) − (1−α)p^γ·(−log(1−p))`` with ``p`` the sigmoid of
      the gt class's logit (Deformable DETR; ``focal_alpha``, ``focal_gamma``);
    - L1: the L1 distance of the ``cxcywh`` boxes; GIoU: ``torchvision.ops.generalized_box_iou``
      of the ``xyxy`` boxes.

    A non-finite cost (NaN / inf predictions) becomes the largest float, so such a query is
    matched only when nothing else can be (as transformers' ``HungarianMatcher``). Each image
    with G_b valid gt matches ``min(Q, G_b)`` queries.

    ``__call__(anchors, gt, *, predictions)``:

    - ``predictions``: ``logits [B,Q,K]`` (K = C+1 with column 0 no-object when
      ``background_column``, else C; columns in label order 1..C) and ``boxes [B,Q,4]``
      cxcywh in 0..1 of each image;
    - ``gt``: the normalised ``GroundTruth`` (``boxes [B,G,4]`` xyxy 0..1, ``labels [B,G]``
      1..C / -1, ``valid [B,G]``); invalid rows are never matched;
    - ``anchors``: the predicted boxes as ``Anchors`` (not read: the boxes come from
      ``predictions``).

    Returns an ``Assignment`` with ``matched`` int64 ``[B,Q]`` (gt index in 0..G-1 or -1) on the
    predictions' device and no weights; with G = 0 (or no valid gt) every query is -1. No
    gradient flows through the matching.

    ``match_groups([(anchors, gt, predictions), ...])``: one ``Assignment`` per problem, each
    as ``__call__`` would give it (its own B, Q and G), with one host copy for them all.
    """

    reads_set_predictions = True

    @attrs.frozen(kw_only=True)
    class Config:
        class_weight: float = attrs.field(default=1.0, validator=_weight)
        l1_weight: float = attrs.field(default=5.0, validator=_weight)
        giou_weight: float = attrs.field(default=2.0, validator=_weight)
        class_cost: Literal["softmax", "focal"] = "softmax"
        focal_alpha: float = attrs.field(default=0.25, validator=_unit)
        focal_gamma: float = attrs.field(default=2.0, validator=attrs.validators.ge(0.0))
        background_column: bool | None = None

        def __attrs_post_init__(self) -> None:
            if self.class_weight == self.l1_weight == self.giou_weight == 0:
                raise ValueError(
                    "every matching cost weight is zero: class_weight, l1_weight and "
                    "giou_weight are all 0; set at least one > 0"
                )

    @classmethod
    def background_column(cls, cfg: Any) -> bool:
        """``cfg.background_column`` when set, else True for softmax (``[B,Q,C+1]``, column 0
        no-object) and False for focal (``[B,Q,C]``)."""
        value = getattr(cfg, "background_column", None)
        if value is not None:
            return bool(value)
        return getattr(cfg, "class_cost", "softmax") == "softmax"

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.with_background = self.background_column(cfg)

    @torch.no_grad()
    def __call__(
        self,
        anchors: Anchors,
        gt: GroundTruth,
        *,
        predictions: dict[str, torch.Tensor] | None = None,
    ) -> Assignment:
        return self.match_groups([(anchors, gt, predictions)])[0]

    @torch.no_grad()
    def match_groups(
        self, problems: Sequence[tuple[Anchors, GroundTruth, dict[str, torch.Tensor] | None]]
    ) -> list[Assignment]:
        """``problems`` of ``(anchors, gt, predictions)`` as ``__call__`` takes them → one
        ``Assignment`` each; every problem's cost is built on the device, then all of them come
        to the host in one copy."""
        checked = [_predictions(predictions, gt) for _, gt, predictions in problems]
        costs = []
        for (_, gt, _), (logits, boxes) in zip(problems, checked):
            if gt.boxes.shape[1] == 0 or boxes.shape[1] == 0:
                costs.append(None)
                continue
            cost = self.cost(logits, boxes, gt)
            costs.append(torch.where(gt.valid[:, None, :], cost, torch.inf))
        solved = iter(_solve([c for c in costs if c is not None]))
        out = []
        for cost, (_, boxes) in zip(costs, checked):
            if cost is None:
                matched = torch.full(boxes.shape[:2], -1, dtype=torch.int64, device=boxes.device)
            else:
                matched = from_host(next(solved), dtype=torch.int64, device=boxes.device)
            out.append(Assignment(matched))
        return out

    def cost(self, logits: torch.Tensor, boxes: torch.Tensor, gt: GroundTruth) -> torch.Tensor:
        """float32 ``[B,Q,G]``: the weighted matching cost of every query and gt (finite; the
        columns of invalid gt hold arbitrary finite values)."""
        boxes, gt_boxes = boxes.float(), gt.boxes.float()
        terms = []
        if self.cfg.l1_weight:
            l1 = torch.cdist(boxes, box_convert(gt_boxes, "xyxy", "cxcywh"), p=1)
            terms.append(self.cfg.l1_weight * l1)
        if self.cfg.class_weight:
            terms.append(self.cfg.class_weight * self.class_cost(logits.float(), gt.labels))
        if self.cfg.giou_weight:
            giou = generalized_box_iou(box_convert(boxes, "cxcywh", "xyxy"), gt_boxes)
            terms.append(self.cfg.giou_weight * -giou)
        cost = sum(terms[1:], terms[0])
        big = torch.finfo(cost.dtype).max
        return torch.nan_to_num(cost, nan=big, posinf=big, neginf=big)

    def class_cost(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """float ``[B,Q,G]``: the class cost of each query for each gt's label (``labels [B,G]``
        in 1..C; padded labels give arbitrary values)."""
        b, q, _ = logits.shape
        column = (labels - 1 + int(self.with_background)).clamp(min=0)
        index = column[:, None, :].expand(b, q, -1)
        if self.cfg.class_cost == "softmax":
            return -logits.softmax(-1).gather(2, index)
        p = logits.sigmoid().gather(2, index)
        alpha, gamma = self.cfg.focal_alpha, self.cfg.focal_gamma
        positive = alpha * (1 - p) ** gamma * -(p + 1e-8).log()
        negative = (1 - alpha) * p**gamma * -(1 - p + 1e-8).log()
        return positive - negative


def _predictions(
    predictions: dict[str, torch.Tensor] | None, gt: GroundTruth
) -> tuple[torch.Tensor, torch.Tensor]:
    """``logits [B,Q,K]`` and ``boxes [B,Q,4]`` from a set head's predictions, checked."""
    if not predictions or "logits" not in predictions or "boxes" not in predictions:
        got = sorted(predictions) if predictions else predictions
        raise ValueError(
            "hungarian: predictions must hold a set head's 'logits' [B,Q,K] and 'boxes' "
            f"[B,Q,4] (cxcywh 0..1); got {got}"
        )
    logits, boxes = predictions["logits"], predictions["boxes"]
    b = gt.boxes.shape[0]
    if logits.dim() != 3 or boxes.shape != (*logits.shape[:2], 4) or logits.shape[0] != b:
        raise ValueError(
            f"hungarian: expected logits [B,Q,K] and boxes [B,Q,4] with B = {b} (the gt's), "
            f"got {tuple(logits.shape)} and {tuple(boxes.shape)}"
        )
    return logits, boxes


def _solve(costs: list[torch.Tensor]) -> list[np.ndarray]:
    """``costs``: float32 ``[B_i,Q_i,G_i]`` each (+inf in the columns of invalid gt, finite
    elsewhere) → int64 numpy ``[B_i,Q_i]`` each: every query's gt column or -1.

    The matcher's one host-device synchronisation: all the cost tensors, flattened into one,
    come to the host in one copy (none when ``costs`` is empty), then
    ``linear_sum_assignment`` solves each image's valid columns.
    """
    if not costs:
        return []
    linear_sum_assignment = _scipy_solver()
    flat = torch.cat([c.reshape(-1) for c in costs]).cpu().numpy()
    out, start = [], 0
    for cost in costs:
        host = flat[start : start + cost.numel()].reshape(cost.shape)
        start += cost.numel()
        matched = np.full(host.shape[:2], -1, dtype=np.int64)
        for image, image_cost in enumerate(host):
            columns = np.flatnonzero(np.isfinite(image_cost[0]))
            if columns.size:
                rows, picked = linear_sum_assignment(image_cost[:, columns])
                matched[image, rows] = columns[picked]
        out.append(matched)
    return out


def _scipy_solver() -> Any:
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        raise ModuleNotFoundError(
            "the hungarian matcher needs scipy (scipy.optimize.linear_sum_assignment), which "
            "is not installed: pip install 'anchorage[detr]'"
        ) from None
    return linear_sum_assignment
