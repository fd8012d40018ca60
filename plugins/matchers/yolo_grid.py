"""``yolo_grid``: YOLO's assignment — the cell holding the centre, the best anchor shape.

Each valid gt box goes to the anchor whose cell (at the anchor's level) holds the box centre
and whose shape has the best shape-IoU (IoU of co-centred boxes) with the box, over all
levels' shapes. Anchors not assigned whose *predicted* box overlaps some valid gt above
``ignore_iou`` are ``-2`` (not objectness negatives); the predictions are decoded with YOLO's
box coding at each anchor's stride (``Anchors.strides``). Batched: ``[B,G,A]`` comparisons.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from anchorage.core.interfaces import Anchors, Assignment, GroundTruth, Matcher
from anchorage.core.interfaces.matching import batched_box_iou
from anchorage.core.registry import MATCHERS
from anchorage.plugins.box_coders.yolo import decode_yolo

_unit = [attrs.validators.ge(0.0), attrs.validators.le(1.0)]


@MATCHERS.register("yolo_grid", examples=({}, {"ignore_iou": 0.7}))
class YoloGridMatcher(Matcher):
    """Centre cell × best shape → positive; predicted IoU > ``ignore_iou`` → ignore.

    Needs ``Anchors.strides`` (the dense skeleton passes the feature strides) and, for the
    ignore rule, ``predictions["bbox_deltas"] [B,A,4]`` (YOLO deltas; without them no anchor
    is ignored). When two gt boxes claim the same anchor the later one wins.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        ignore_iou: float = attrs.field(default=0.5, validator=_unit)
        size_clip: float = attrs.field(default=4.135, validator=attrs.validators.gt(0.0))

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def __call__(
        self, anchors: Anchors, gt: GroundTruth, *, predictions: dict[str, Any] | None = None
    ) -> Assignment:
        if anchors.strides is None:
            raise ValueError("yolo_grid needs Anchors.strides (the levels' feature strides)")
        ref = anchors.boxes
        b, g = gt.valid.shape
        if g == 0:
            return Assignment(
                torch.full((b, ref.shape[-2]), -1, dtype=torch.int64, device=ref.device)
            )
        stride = anchors.anchor_strides()  # [A]
        matched = self._responsible(ref, stride, gt)
        if predictions is not None and "bbox_deltas" in predictions:
            deltas = predictions["bbox_deltas"].detach().float()
            boxes = decode_yolo(deltas, ref, stride[:, None], self.cfg.size_clip)
            best = _best_iou(boxes, gt)
            matched = torch.where((matched < 0) & (best > self.cfg.ignore_iou), -2, matched)
        return Assignment(matched)

    def _responsible(
        self, ref: torch.Tensor, stride: torch.Tensor, gt: GroundTruth
    ) -> torch.Tensor:
        """int64 ``[B,A]``: the gt each anchor is responsible for, or -1.

        ``ref`` is ``[A,4]`` or per image ``[B,A,4]``; ``stride`` ``[A]``."""
        b, g = gt.valid.shape
        ref = ref.expand(b, -1, -1)  # [B,A,4]
        shapes = ref[..., 2:] - ref[..., :2]  # [B,A,2]
        wh = (gt.boxes[..., 2:] - gt.boxes[..., :2]).clamp(min=1e-6)  # [B,G,2]
        inter = torch.minimum(wh[:, :, None], shapes[:, None]).prod(-1)  # [B,G,A]
        fit = inter / (wh.prod(-1)[..., None] + shapes.prod(-1)[:, None] - inter)  # shape IoU
        best_shape = fit >= fit.amax(dim=-1, keepdim=True)
        centre = (gt.boxes[..., :2] + gt.boxes[..., 2:]) * 0.5  # [B,G,2]
        cell = stride[:, None]  # [A,1]
        anchor_cell = torch.floor((ref[..., :2] + ref[..., 2:]) * 0.5 / cell)  # [B,A,2]
        gt_cell = torch.floor(centre[:, :, None, :] / cell)  # [B,G,A,2]
        same_cell = (gt_cell == anchor_cell[:, None]).all(dim=-1)
        claim = best_shape & same_cell & gt.valid[..., None]  # [B,G,A]
        order = torch.arange(1, g + 1, device=ref.device).view(1, g, 1)
        winner = (claim * order).amax(dim=1)  # [B,A]: 1-based, 0 = none
        return winner - 1


def _best_iou(boxes: torch.Tensor, gt: GroundTruth) -> torch.Tensor:
    """float ``[B,A]``: each predicted box's best IoU with a valid gt box (-1 when none)."""
    return batched_box_iou(gt.boxes, gt.valid, boxes).amax(dim=1)
