"""RPN proposal selection (``rpn_proposals``), torchvision ``RegionProposalNetwork`` semantics.

Per image: the ``pre_nms_top_n`` highest objectness anchors of each level, decoded boxes
clipped to the image, boxes smaller than ``min_size`` and scores below ``score_thresh``
(after sigmoid) dropped, NMS per level, then the ``post_nms_top_n`` best. Training and testing
use separate numbers (torchvision: 2000/2000 train, 1000/1000 test).

The batch is handled at once: top-k per level runs on ``[B, A_l]``; NMS runs once for the
whole batch (``grouped_nms``) keyed by (image, level), which is NMS per image and level, as
torchvision does it image by image; the survivors are cut into per-image lists with one sync.
"""

from __future__ import annotations

import attrs
import torch

from anchorage.core.interfaces import Anchors, DensePostprocessConfig, roles
from anchorage.core.registry import POSTPROCESSORS
from anchorage.plugins.postprocess import fields
from anchorage.plugins.postprocess.batching import (
    clip_boxes,
    grouped_nms,
    image_bounds,
    per_image_top_n,
)
from anchorage.plugins.postprocess.padded import (
    anchor_strides,
    clip_to,
    found_rows,
    padded_nms,
)

_pos = attrs.validators.gt(0)


@POSTPROCESSORS.register("rpn_proposals", examples=({}, {"pre_nms_top_n_test": 10}))
class RPNProposals(roles.ProposalGenerator):
    """Objectness + box deltas at the anchors → per-image proposals.

    ``__call__(predictions, anchors, image_sizes, *, training=False)``: ``predictions`` has
    ``objectness`` float ``[B,A]`` (logits) and ``bbox_deltas`` float ``[B,A,4]``, decoded
    against ``anchors`` (``Anchors``, level by level) by the injected ``box_coder`` (only the
    per-level top candidates are decoded). Returns a list of B dicts with ``boxes [R_i,4]`` and
    ``scores [R_i]`` (sigmoid objectness), best first; ``R_i <= post_nms_top_n``, possibly 0.
    Nothing here is differentiable (inputs detached).
    """

    @attrs.frozen(kw_only=True)
    class Config(DensePostprocessConfig):
        pre_nms_top_n_train: int = attrs.field(default=2000, validator=_pos)
        pre_nms_top_n_test: int = attrs.field(default=1000, validator=_pos)
        post_nms_top_n_train: int = attrs.field(default=2000, validator=_pos)
        post_nms_top_n_test: int = attrs.field(default=1000, validator=_pos)
        nms_thresh: float = fields.nms_thresh(0.7)
        score_thresh: float = fields.score_thresh(0.0)
        min_size: float = attrs.field(default=1e-3, validator=attrs.validators.ge(0.0))

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.box_coder = cfg.box_coder

    def __call__(
        self,
        predictions: dict[str, torch.Tensor],
        anchors: Anchors,
        image_sizes: list[tuple[int, int]],
        *,
        training: bool = False,
    ) -> list[dict[str, torch.Tensor]]:
        cfg = self.cfg
        pre_n = cfg.pre_nms_top_n_train if training else cfg.pre_nms_top_n_test
        post_n = cfg.post_nms_top_n_train if training else cfg.post_nms_top_n_test
        num_anchors_per_level = list(anchors.num_per_level)
        objectness = predictions["objectness"].detach()
        b = objectness.shape[0]
        idx, levels = _top_n_per_level(objectness, num_anchors_per_level, pre_n)
        rows = torch.arange(b, device=objectness.device)[:, None]
        scores = torch.sigmoid(objectness[rows, idx])  # [B,K]
        deltas = predictions["bbox_deltas"].detach()
        boxes = self._decode(deltas, anchors.boxes, anchors.anchor_strides(), rows, idx)  # [B,K,4]
        boxes = clip_boxes(boxes, image_bounds(image_sizes, boxes)[:, None, :])
        keep = _size_and_score_ok(boxes, scores, cfg.min_size, cfg.score_thresh)
        image = rows.expand_as(scores)
        groups = image * len(num_anchors_per_level) + levels
        flat = keep.view(-1).nonzero().squeeze(1)
        kept = grouped_nms(
            boxes.view(-1, 4)[flat], scores.view(-1)[flat], groups.reshape(-1)[flat], cfg.nms_thresh
        )
        flat = flat[kept]  # best first over the batch
        return _split_top_n(boxes.view(-1, 4), scores.view(-1), flat, scores.shape[1], b, post_n)

    def export_proposals(
        self, predictions: dict[str, torch.Tensor], anchors: Anchors, image_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The test-time proposals in the fixed layout of an exported graph (every image of
        the batch is ``image_size`` ``(h, w)``): boxes ``[B,P,4]`` xyxy batch pixels, best
        first, zero rows past each image's proposals, and ``valid [B,P]``; ``P`` is
        ``post_nms_top_n_test``. The same
        candidates as ``__call__``; a dropped one (too small, below the score threshold) gets
        the score ``-inf`` instead of leaving the batch, and ``padded.padded_nms`` runs the
        NMS per (image, level) with the level as the group."""
        cfg = self.cfg
        counts = list(anchors.num_per_level)
        objectness = predictions["objectness"].detach()
        idx, levels = _top_n_per_level(objectness, counts, cfg.pre_nms_top_n_test)
        rows = torch.arange(objectness.shape[0], device=objectness.device)[:, None]
        scores = torch.sigmoid(objectness.gather(1, idx))  # [B,K]
        deltas = predictions["bbox_deltas"].detach()
        boxes = self._decode(deltas, anchors.boxes, anchor_strides(anchors), rows, idx)
        boxes = clip_to(boxes, image_size)
        keep = _size_and_score_ok(boxes, scores, cfg.min_size, cfg.score_thresh)
        scores = scores.masked_fill(~keep, float("-inf"))
        found = padded_nms(
            boxes, scores, levels, len(counts), cfg.nms_thresh, cfg.post_nms_top_n_test
        )
        return found["boxes"], found_rows(found)

    def _decode(
        self,
        deltas: torch.Tensor,
        anchors: torch.Tensor,
        strides: torch.Tensor | None,
        rows: torch.Tensor,
        idx: torch.Tensor,
    ) -> torch.Tensor:
        """The candidates' boxes ``[B,K,4]``: ``deltas [B,A,4]`` at ``idx [B,K]`` decoded
        against their ``anchors`` (``[A,4]`` or ``[B,A,4]``) with their ``strides [A]``."""
        ref = anchors[idx] if anchors.dim() == 2 else anchors[rows, idx]
        stride = None if strides is None else strides[idx]
        return self.box_coder.decode(deltas[rows, idx], ref, stride)


def _top_n_per_level(
    objectness: torch.Tensor, counts: list[int], n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``[B,K]`` of the ``n`` best anchors of each level, and their level ``[B,K]``."""
    if sum(counts) != objectness.shape[1]:
        raise ValueError(
            f"rpn_proposals: {objectness.shape[1]} anchors but num_anchors_per_level sums to "
            f"{sum(counts)}"
        )
    idx, levels, offset = [], [], 0
    for level, part in enumerate(objectness.split(counts, dim=1)):
        k = min(n, part.shape[1])
        top = part.topk(k, dim=1).indices + offset
        idx.append(top)
        levels.append(torch.full_like(top, level))
        offset += part.shape[1]
    return torch.cat(idx, dim=1), torch.cat(levels, dim=1)


def _size_and_score_ok(
    boxes: torch.Tensor, scores: torch.Tensor, min_size: float, score_thresh: float
) -> torch.Tensor:
    """``torchvision.ops.remove_small_boxes`` (which returns indices of a 2-D input) and the
    score threshold, as one mask ``[B,K]``."""
    ws, hs = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    return (ws >= min_size) & (hs >= min_size) & (scores >= score_thresh)


def _split_top_n(
    boxes: torch.Tensor, scores: torch.Tensor, flat: torch.Tensor, k: int, b: int, n: int
) -> list[dict[str, torch.Tensor]]:
    """Per-image ``n`` best of the NMS survivors ``flat`` (indices into ``[B*K]``, best first)."""
    image = torch.div(flat, k, rounding_mode="floor")
    pos, sizes = per_image_top_n(image, b, n)
    flat = flat[pos]
    return [
        {"boxes": bx, "scores": sc}
        for bx, sc in zip(boxes[flat].split(sizes), scores[flat].split(sizes))
    ]
