import pytest
import torch
from torchvision.models.detection._utils import Matcher as TVMatcher
from torchvision.models.detection._utils import SSDMatcher
from torchvision.ops import box_iou

from anchorage.core import SpecError, build_component
from anchorage.core.interfaces import Anchors, GroundTruth
from anchorage.core.interfaces.matching import batched_box_iou


def _boxes(n: int, g: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * 80
    return torch.cat([xy, xy + 8 + torch.rand(n, 2, generator=g) * 40], -1)


def _padded_problem(seed: int):
    g = torch.Generator().manual_seed(seed)
    counts = [4, 2, 0]
    gt = torch.zeros(3, 4, 4)
    valid = torch.zeros(3, 4, dtype=torch.bool)
    for b, n in enumerate(counts):
        gt[b, :n] = _boxes(n, g)
        valid[b, :n] = True
    anchors = _boxes(300, g)
    return gt, valid, anchors, counts


@pytest.mark.parametrize(
    "params,reference",
    [
        ({"high_threshold": 0.5}, lambda: TVMatcher(0.5, 0.5)),
        (
            {"high_threshold": 0.7, "low_threshold": 0.3, "allow_low_quality_matches": True},
            lambda: TVMatcher(0.7, 0.3, allow_low_quality_matches=True),
        ),
        ({"high_threshold": 0.5, "keep_best_anchor": True}, lambda: SSDMatcher(0.5)),
    ],
)
def test_same_as_torchvision_per_image(params, reference):
    matcher = build_component("matcher", {"type": "max_iou", **params})
    for seed in range(3):
        gt, valid, anchors, counts = _padded_problem(seed)
        out = matcher.match_iou(batched_box_iou(gt, valid, anchors))
        for b, n in enumerate(counts):
            if n == 0:
                assert (out[b] == -1).all()
                continue
            expected = reference()(box_iou(gt[b, :n], anchors))
            assert torch.equal(out[b], expected), (seed, b)
        assert (out >= -2).all() and out.dtype == torch.int64


def test_keep_best_anchor_assigns_every_gt():
    # gt 1 overlaps anchor 0 best, but only at IoU 0.25 < threshold: still matched.
    anchors = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    gt = torch.tensor([[[20.0, 20, 30, 30], [0, 0, 20, 20]]])
    iou = batched_box_iou(gt, torch.ones(1, 2, dtype=torch.bool), anchors)
    plain = build_component("matcher", {"type": "max_iou"}).match_iou(iou)
    keep = build_component("matcher", {"type": "max_iou", "keep_best_anchor": True}).match_iou(iou)
    assert plain.tolist() == [[-1, 0]]
    assert keep.tolist() == [[1, 0]]


def test_threshold_validation():
    with pytest.raises(SpecError, match="high_threshold"):
        build_component("matcher", {"type": "max_iou", "high_threshold": 1.5})
    with pytest.raises(SpecError, match="low_threshold must be <= high_threshold"):
        build_component("matcher", {"type": "max_iou", "high_threshold": 0.3, "low_threshold": 0.5})


@pytest.mark.parametrize("name", ["max_iou", "greedy_bipartite"])
def test_matcher_contract_is_iou_then_match_iou(name):
    matcher = build_component("matcher", {"type": name})
    gt, valid, anchors, _ = _padded_problem(5)
    labels = torch.where(valid, 1, -1)
    out = matcher(Anchors.single_level(anchors), GroundTruth(gt, labels, valid))
    assert out.weights is None
    assert torch.equal(out.matched, matcher.match_iou(batched_box_iou(gt, valid, anchors)))


def test_random_problems_same_as_torchvision_through_the_contract():
    matcher = build_component(
        "matcher",
        {"type": "max_iou", "high_threshold": 0.7, "low_threshold": 0.3,
         "allow_low_quality_matches": True},
    )  # fmt: skip
    for seed in range(5):
        gt, valid, anchors, counts = _padded_problem(10 + seed)
        per_image = torch.stack([anchors, anchors.flip(0), anchors])  # proposals: [B,N,4]
        out = matcher(Anchors.single_level(per_image), GroundTruth(gt, valid.long(), valid))
        for b, n in enumerate(counts):
            if n:
                expected = TVMatcher(0.7, 0.3, True)(box_iou(gt[b, :n], per_image[b]))
                assert torch.equal(out.matched[b], expected), (seed, b)
