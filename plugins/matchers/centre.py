"""Matchers by anchor-centre position: ``centre_sampling`` (FCOS) and ``centre_in_box``.

Both work on the padded batch in an ``[B,A,G]`` layout (anchor × gt per image) with no loop over
images, and give each anchor that several gt boxes claim to the one of smallest area.
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch

from anchorage.core.interfaces import Anchors, Assignment, GroundTruth, Matcher
from anchorage.core.registry import MATCHERS


def _offsets(centres: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
    """float ``[B,A,G,4]``: (left, top, right, bottom) distances of centres ``[B,A,2]`` to gt."""
    x, y = centres[..., 0:1], centres[..., 1:2]  # [B,A,1]
    x0, y0, x1, y1 = gt_boxes[:, None].unbind(dim=-1)  # [B,1,G]
    return torch.stack([x - x0, y - y0, x1 - x, y1 - y], dim=3)


def _smallest_area(match: torch.Tensor, gt: GroundTruth) -> torch.Tensor:
    """bool ``[B,A,G]`` candidate pairs → int64 ``[B,A]``: the smallest-area gt, or -1.

    torchvision FCOS's arithmetic: ``match · (1e8 − area)``, max over gt, < 1e-5 → -1.
    """
    boxes = gt.boxes
    areas = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])  # [B,G]
    match = match & gt.valid[:, None, :]
    score = match.to(torch.float32) * (1e8 - areas[:, None, :])
    best, index = score.max(dim=2)
    return torch.where(best < 1e-5, Matcher.BACKGROUND, index)


class GeometricMatcher(Matcher):
    """Base of matchers that look at anchor and gt geometry image by image (batched).

    ``__call__`` gives all background when the batch has no gt (G = 0), else calls
    ``assign(boxes, anchors, gt)`` with the anchor boxes as ``[B,A,4]`` (a view when shared)
    and wraps its int64 ``[B,A]`` result in an ``Assignment``.
    """

    def __call__(
        self,
        anchors: Anchors,
        gt: GroundTruth,
        *,
        predictions: dict[str, torch.Tensor] | None = None,
    ) -> Assignment:
        b, g = gt.valid.shape
        boxes = anchors.boxes
        if g == 0:
            shape = (b, boxes.shape[-2])
            return Assignment(
                torch.full(shape, self.BACKGROUND, dtype=torch.int64, device=boxes.device)
            )
        ref = boxes.expand(b, -1, -1) if boxes.dim() == 2 else boxes
        return Assignment(self.assign(ref, anchors, gt))

    def assign(self, boxes: torch.Tensor, anchors: Anchors, gt: GroundTruth) -> torch.Tensor:
        raise NotImplementedError


@MATCHERS.register(
    "centre_sampling",
    examples=({}, {"radius": 1.0, "scale_ranges": ((0, 64), (64, 128), (128, 1e8))}),
)
class CentreSamplingMatcher(GeometricMatcher):
    """FCOS centre sampling (torchvision ``FCOS.compute_loss``), batched.

    An anchor (point) of size s matches a gt box when its centre lies inside the box, within
    ``radius · s`` of the box centre (Chebyshev distance), and the largest of its four distances
    to the box sides lies in its level's scale range; among several such gt boxes the smallest
    wins. s is the anchor's width (``size_from: anchor``, torchvision: anchors as wide as the
    stride) or its level's stride (``size_from: stride``, from ``Anchors.strides``). Scale
    ranges: ``scale_ranges`` gives ``(low, high)`` pixels per level; by default ``(4·s, 8·s)``
    with the first level from 0 and the last to infinity (torchvision). Never returns ``-2``.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        radius: float = attrs.field(default=1.5, validator=attrs.validators.gt(0.0))
        scale_ranges: tuple[tuple[float, float], ...] | None = None
        size_from: Literal["anchor", "stride"] = "anchor"

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def assign(self, ref: torch.Tensor, anchors: Anchors, gt: GroundTruth) -> torch.Tensor:
        centres = (ref[..., :2] + ref[..., 2:]) / 2  # [B,A,2]
        size = self._sizes(anchors, ref)  # [B,A]
        gt_centres = (gt.boxes[..., :2] + gt.boxes[..., 2:]) / 2  # [B,G,2]
        near = (centres[:, :, None, :] - gt_centres[:, None, :, :]).abs_().max(dim=3).values
        match = near < self.cfg.radius * size[..., None]
        offsets = _offsets(centres, gt.boxes)
        match &= offsets.min(dim=3).values > 0
        lower, upper = self._scale_range(anchors, size)
        reach = offsets.max(dim=3).values  # [B,A,G]
        match &= (reach > lower[..., None]) & (reach < upper[..., None])
        return _smallest_area(match, gt)

    def _sizes(self, anchors: Anchors, ref: torch.Tensor) -> torch.Tensor:
        if self.cfg.size_from == "anchor":
            return ref[..., 2] - ref[..., 0]
        if anchors.strides is None:
            raise ValueError("centre_sampling: size_from 'stride' needs Anchors.strides")
        return anchors.per_level(anchors.strides).expand(ref.shape[0], -1)

    def _scale_range(
        self, anchors: Anchors, size: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.scale_ranges is not None:
            ranges = self.cfg.scale_ranges
            if len(ranges) != len(anchors.num_per_level):
                raise ValueError(
                    f"centre_sampling: {len(ranges)} scale_ranges for "
                    f"{len(anchors.num_per_level)} anchor levels"
                )
            lows, highs = zip(*ranges)
            shape = size.shape
            return anchors.per_level(lows).expand(shape), anchors.per_level(highs).expand(shape)
        lower, upper = size * 4, size * 8
        first, last = anchors.num_per_level[0], anchors.num_per_level[-1]
        lower[:, :first] = 0
        upper[:, -last:] = float("inf")
        return lower, upper


@MATCHERS.register("centre_in_box", examples=({}, {"radius": 0.5}))
class CentreInBoxMatcher(GeometricMatcher):
    """Anchors whose centre lies inside a gt box (its central part) match that box.

    The central part is the box scaled by ``radius`` about its centre (1: the whole box; 0.5:
    the middle half of its width and height). An anchor inside several gt boxes takes the one
    of smallest area. Never returns ``-2``.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        radius: float = attrs.field(
            default=1.0, validator=[attrs.validators.gt(0.0), attrs.validators.le(1.0)]
        )

    def __init__(self, cfg: Config) -> None:
        self.radius = cfg.radius

    def assign(self, ref: torch.Tensor, anchors: Anchors, gt: GroundTruth) -> torch.Tensor:
        centre, half = (
            (gt.boxes[..., :2] + gt.boxes[..., 2:]) / 2,
            (gt.boxes[..., 2:] - gt.boxes[..., :2]) / 2,
        )
        region = torch.cat([centre - self.radius * half, centre + self.radius * half], dim=-1)
        inside = _offsets((ref[..., :2] + ref[..., 2:]) / 2, region).min(dim=3).values > 0
        return _smallest_area(inside, gt)
