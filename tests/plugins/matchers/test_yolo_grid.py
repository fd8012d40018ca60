"""``yolo_grid``: per-image ``[B,A,4]`` anchors, which the matcher contract allows."""

from __future__ import annotations

import torch

from anchorage.core.interfaces import Anchors, GroundTruth
from anchorage.core.registry import MATCHERS


def _anchors(shift: float) -> Anchors:
    """Two levels (strides 8, 16) on a 32×32 image, grid-centred, one shape per level."""
    levels = []
    for stride, side in ((8, 12.0 + shift), (16, 28.0 + shift)):
        n = 32 // stride
        ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        c = (torch.stack([xs, ys], -1).reshape(-1, 2).float() + 0.5) * stride
        levels.append(torch.cat([c - side / 2, c + side / 2], -1))
    return Anchors(torch.cat(levels), tuple(len(x) for x in levels), (8, 16))


def _gt() -> GroundTruth:
    boxes = torch.tensor([[[2.0, 3, 14, 13], [4, 6, 30, 30]], [[17.0, 17, 31, 29], [0, 0, 0, 0]]])
    labels = torch.tensor([[1, 2], [1, -1]])
    return GroundTruth(boxes, labels, labels > 0)


def test_per_image_anchors_match_each_image_on_its_own() -> None:
    """``[B,A,4]`` anchors (different per image) give each image the answer of its own
    ``[A,4]`` anchors; the per-image form used to fail on shapes when B != G."""
    matcher = MATCHERS.get("yolo_grid").build()
    first, second = _anchors(0.0), _anchors(10.0)
    gt = _gt()
    stacked = Anchors(torch.stack([first.boxes, second.boxes]), first.num_per_level, first.strides)
    both = matcher(stacked, gt).matched
    assert both.shape == (2, 20)
    for i, anchors in enumerate((first, second)):
        alone = matcher(anchors, gt.slice(i, i + 1)).matched[0]
        assert torch.equal(both[i], alone)
    assert torch.equal(matcher(first, gt).matched[0], both[0])
    # the small box (centre (8, 8)) goes to the fine level's cell (1, 1) in image 0
    assert both[0, 5] == 0
    # image 1: the 14x12 box fits the fine shape (12) better than the coarse (28) one,
    # but with the second image's larger shapes (22 / 38) still the fine level, cell (3, 2)
    assert both[1, 2 * 4 + 3] == 0 and (both[1] == 0).sum() == 1
