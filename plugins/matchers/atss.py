"""``atss``: Adaptive Training Sample Selection (Zhang et al., 2020), batched over images."""

from __future__ import annotations

import attrs
import torch

from anchorage.core.interfaces import Anchors, GroundTruth, Matcher
from anchorage.core.interfaces.matching import batched_box_iou
from anchorage.core.registry import MATCHERS

from .centre import GeometricMatcher, _offsets


@MATCHERS.register("atss", examples=({}, {"topk": 3}))
class ATSSMatcher(GeometricMatcher):
    """ATSS: per gt, the ``topk`` anchors of each level closest to its centre are candidates;
    those whose IoU reaches the mean + standard deviation (unbiased) of the candidates' IoU and
    whose centre lies inside the gt box (by more than ``eps`` pixels) are positive. An anchor
    positive for several gt boxes takes the one of highest IoU. Never returns ``-2``.

    Centre distances are Euclidean between box centres; levels come from
    ``Anchors.num_per_level`` (one loop over levels, each vectorized over images and gt).
    """

    @attrs.frozen(kw_only=True)
    class Config:
        topk: int = attrs.field(default=9, validator=attrs.validators.ge(1))
        eps: float = attrs.field(default=0.01, validator=attrs.validators.ge(0.0))

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def assign(self, ref: torch.Tensor, anchors: Anchors, gt: GroundTruth) -> torch.Tensor:
        iou = batched_box_iou(gt.boxes, gt.valid, anchors.boxes)  # [B,G,A]
        centres = (ref[..., :2] + ref[..., 2:]) / 2  # [B,A,2]
        gt_centres = (gt.boxes[..., :2] + gt.boxes[..., 2:]) / 2  # [B,G,2]
        distance = torch.cdist(gt_centres, centres)  # [B,G,A]
        candidate = self._candidates(distance, anchors.num_per_level)
        threshold = _mean_plus_std(iou, candidate)  # [B,G]
        inside = _offsets(centres, gt.boxes).min(dim=3).values.transpose(1, 2) > self.cfg.eps
        positive = candidate & (iou >= threshold[..., None]) & inside & gt.valid[..., None]
        best, index = iou.masked_fill(~positive, -1.0).max(dim=1)  # [B,A]
        return torch.where(best >= 0, index, Matcher.BACKGROUND)

    def _candidates(self, distance: torch.Tensor, counts: tuple[int, ...]) -> torch.Tensor:
        """bool ``[B,G,A]``: the ``topk`` closest anchors of every level, per gt."""
        chosen = torch.zeros_like(distance, dtype=torch.bool)
        start = 0
        for n in counts:
            k = min(self.cfg.topk, n)
            if k > 0:
                nearest = distance[..., start : start + n].topk(k, dim=2, largest=False).indices
                chosen.scatter_(2, nearest + start, True)
            start += n
        return chosen


def _mean_plus_std(iou: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
    """float ``[B,G]``: mean + unbiased std of ``iou`` over each gt's candidates (std 0 for one)."""
    weight = candidate.to(iou.dtype)
    count = weight.sum(dim=2)
    mean = (iou * weight).sum(dim=2) / count.clamp(min=1)
    square = ((iou - mean[..., None]) ** 2 * weight).sum(dim=2)
    std = (square / (count - 1).clamp(min=1)).sqrt()
    return mean + std
