"""centre_sampling (vs torchvision FCOS's matching), centre_in_box and atss."""

from types import SimpleNamespace

import pytest
import torch
from torchvision.models.detection.fcos import FCOS

from anchorage.core import build_component
from anchorage.core.interfaces import Anchors, GroundTruth


def _fcos_anchors(image: int = 128, strides=(8, 16, 32, 64, 128)) -> Anchors:
    """torchvision FCOS anchors: one per location, as wide as the stride, centred on the cell."""
    levels = []
    for s in strides:
        n = -(-image // s)
        xs = torch.arange(n, dtype=torch.float32) * s
        y, x = torch.meshgrid(xs, xs, indexing="ij")
        corner = torch.stack([x, y], -1).reshape(-1, 2) - s / 2
        levels.append(torch.cat([corner, corner + s], -1))
    return Anchors(torch.cat(levels), tuple(len(level) for level in levels), strides)


def _random_gt(seed: int, counts=(5, 1, 0, 3), image: float = 128.0) -> GroundTruth:
    g = torch.Generator().manual_seed(seed)
    b, n = len(counts), max(counts)
    xy = torch.rand(b, n, 2, generator=g) * image * 0.7
    wh = 4 + torch.rand(b, n, 2, generator=g) * image * 0.6
    boxes = torch.cat([xy, (xy + wh).clamp(max=image)], -1)
    valid = torch.arange(n)[None] < torch.tensor(counts)[:, None]
    boxes = boxes * valid[..., None]
    labels = torch.where(valid, 1, -1)
    return GroundTruth(boxes, labels, valid)


def _torchvision_fcos_matches(anchors: Anchors, gt: GroundTruth, radius: float) -> list:
    captured = {}

    class Head:
        def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
            captured["matched"] = matched_idxs

    fake = SimpleNamespace(center_sampling_radius=radius, head=Head())
    targets = [
        {"boxes": boxes[valid], "labels": labels[valid]}
        for boxes, labels, valid in zip(gt.boxes, gt.labels, gt.valid)
    ]
    per_image = [anchors.boxes] * len(targets)
    FCOS.compute_loss(fake, targets, {}, per_image, list(anchors.num_per_level))
    return captured["matched"]


@pytest.mark.parametrize("radius", [1.5, 0.8])
def test_centre_sampling_equals_torchvision_fcos(radius):
    anchors = _fcos_anchors()
    matcher = build_component("matcher", {"type": "centre_sampling", "radius": radius})
    positives = 0
    for seed in range(4):
        gt = _random_gt(seed)
        got = matcher(anchors, gt).matched
        for b, expected in enumerate(_torchvision_fcos_matches(anchors, gt, radius)):
            assert torch.equal(got[b], expected), (seed, b)
        positives += int((got >= 0).sum())
    assert positives > 20  # the comparison covers real matches


def test_centre_sampling_by_stride_and_explicit_scale_ranges():
    anchors = _fcos_anchors(strides=(8, 16))
    gt = GroundTruth(
        torch.tensor([[[8.0, 8.0, 24.0, 24.0], [60.0, 60.0, 124.0, 124.0]]]),
        torch.tensor([[1, 2]]),
        torch.tensor([[True, True]]),
    )
    cfg = {"type": "centre_sampling", "size_from": "stride", "radius": 10.0}
    ranges = build_component("matcher", {**cfg, "scale_ranges": [[0, 16], [16, 1000]]})
    matched = ranges(anchors, gt).matched[0]
    n0 = anchors.num_per_level[0]
    # sides at most 8..16 px away: the small box only on the fine level, the large one
    # (>= 32 px) only on the coarse level
    assert (matched[:n0] == 0).any() and not (matched[:n0] == 1).any()
    assert (matched[n0:] == 1).any() and not (matched[n0:] == 0).any()
    with pytest.raises(ValueError, match="2 anchor levels"):
        build_component("matcher", {**cfg, "scale_ranges": [[0, 1e8]]})(anchors, gt)


def test_centre_in_box_hand_checked():
    # anchor centres: (5,5), (15,15), (25,25), (45,45)
    c = torch.tensor([[5.0, 5], [15, 15], [25, 25], [45, 45]])
    anchors = Anchors.single_level(torch.cat([c - 2, c + 2], -1))
    gt = GroundTruth(
        torch.tensor([[[0.0, 0, 30, 30], [10, 10, 20, 20], [0, 0, 50, 50]]]),
        torch.tensor([[1, 2, 3]]),
        torch.tensor([[True, True, False]]),  # the third box is a crowd box: never matched
    )
    whole = build_component("matcher", {"type": "centre_in_box"})(anchors, gt).matched
    # (15,15) is inside both boxes: the smaller (gt 1) wins
    assert whole.tolist() == [[0, 1, 0, -1]]
    half = build_component("matcher", {"type": "centre_in_box", "radius": 0.5})
    # centre regions: gt0 7.5..22.5, gt1 12.5..17.5
    assert half(anchors, gt).matched.tolist() == [[-1, 1, -1, -1]]


def test_atss_hand_checked():
    # gt [0,0,20,20], centre (10,10); the 4 nearest anchors are candidates (the 5th is far)
    boxes = torch.tensor(
        [[1.0, 1, 21, 21], [8, 8, 12, 12], [6, 6, 10, 10], [10, 10, 14, 14], [50, 50, 60, 60]]
    )
    anchors = Anchors(boxes, (5,), (8,))
    gt = GroundTruth(
        torch.tensor([[[0.0, 0, 20, 20], [0, 0, 0, 0]]]),
        torch.tensor([[1, -1]]),
        torch.tensor([[True, False]]),
    )
    matcher = build_component("matcher", {"type": "atss", "topk": 4})
    # candidate IoUs 361/439 = 0.822, 0.04, 0.04, 0.04: mean 0.236 + std 0.391 = 0.627
    assert matcher(anchors, gt).matched.tolist() == [[0, -1, -1, -1, -1]]
    # a single candidate is its own mean (std 0): positive
    one = build_component("matcher", {"type": "atss", "topk": 1})(anchors, gt).matched
    assert one.tolist() == [[-1, 0, -1, -1, -1]]


def test_atss_candidates_are_per_level():
    matcher = build_component("matcher", {"type": "atss", "topk": 1})
    distance = torch.tensor([[[5.0, 4.9, 1.0, 1.1]]])
    # the nearest anchor of each level, not the two nearest overall
    assert matcher._candidates(distance, (2, 2)).tolist() == [[[False, True, True, False]]]
    two = build_component("matcher", {"type": "atss", "topk": 2})
    assert two._candidates(distance, (3, 1)).tolist() == [[[False, True, True, True]]]
