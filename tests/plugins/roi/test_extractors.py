"""RoI extractors are torchvision.ops on our feature dicts; empty box lists work."""

from __future__ import annotations

import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align, roi_pool

from anchorage.core.build import build_component
from anchorage.core.interfaces import FeatureSpec

INFO = (
    FeatureSpec("p2", 4, 4),
    FeatureSpec("p3", 4, 8),
    FeatureSpec("p4", 4, 16),
    FeatureSpec("p5", 4, 32),
)


def _inputs() -> tuple[dict, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    feats = {f.name: torch.rand(2, 4, 128 // f.stride, 128 // f.stride, generator=g) for f in INFO}
    boxes = [torch.tensor([[1.0, 2, 30, 40], [10, 10, 120, 100]]), torch.tensor([[5.0, 5, 60, 20]])]
    return feats, boxes


def test_single_level_pooling_equals_torchvision_ops() -> None:
    feats, boxes = _inputs()
    rois = torch.tensor([[0, 1.0, 2, 30, 40], [0, 10, 10, 120, 100], [1, 5, 5, 60, 20]])
    pool = build_component(
        "roi_extractor", {"type": "roi_pool", "featmap_name": "p4"}, in_feature_info=INFO
    )
    torch.testing.assert_close(
        pool(feats, boxes, [(128, 128)] * 2), roi_pool(feats["p4"], rois, 7, 1 / 16)
    )
    align = build_component(
        "roi_extractor",
        {"type": "roi_align", "output_size": 5, "aligned": True},
        in_feature_info=INFO,
    )
    assert align.level.name == "p5" and align.out_channels == 4
    torch.testing.assert_close(
        align(feats, boxes, [(128, 128)] * 2), roi_align(feats["p5"], rois, 5, 1 / 32, 2, True)
    )


def test_multiscale_equals_torchvision_and_skips_extra_level() -> None:
    feats, boxes = _inputs()
    ours = build_component("roi_extractor", {"type": "multiscale_roi_align"}, in_feature_info=INFO)
    tv = MultiScaleRoIAlign(["p2", "p3", "p4"], 7, 2)
    sizes = [(128, 120), (100, 128)]
    torch.testing.assert_close(ours(feats, boxes, sizes), tv(feats, boxes, sizes))


def test_multiscale_many_boxes_every_level_equals_torchvision() -> None:
    g = torch.Generator().manual_seed(1)
    feats = {f.name: torch.rand(3, 4, 512 // f.stride, 512 // f.stride, generator=g) for f in INFO}
    boxes = []
    for n in (40, 0, 25):  # 2..450 px: every level gets boxes; an image without any
        xy = torch.rand(n, 2, generator=g) * 60
        boxes.append(torch.cat([xy, xy + 2 + torch.rand(n, 2, generator=g) ** 2 * 448], 1))
    ours = build_component("roi_extractor", {"type": "multiscale_roi_align"}, in_feature_info=INFO)
    tv = MultiScaleRoIAlign(["p2", "p3", "p4"], 7, 2)
    sizes = [(512, 512)] * 3
    expected = tv(feats, boxes, sizes)
    assert set(tv.map_levels(boxes).tolist()) == {0, 1, 2}
    assert torch.equal(ours(feats, boxes, sizes), expected)


def test_empty_boxes() -> None:
    feats, _ = _inputs()
    for data in ({"type": "roi_pool"}, {"type": "roi_align"}, {"type": "multiscale_roi_align"}):
        ext = build_component("roi_extractor", data, in_feature_info=INFO)
        out = ext(feats, [torch.zeros(0, 4), torch.zeros(0, 4)], [(128, 128)] * 2)
        assert out.shape == (0, 4, 7, 7), data
