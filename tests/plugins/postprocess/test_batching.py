"""per_image_top_n: per-image lists of ranked survivors, dropped entries, empty images."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import batched_nms, nms

from anchorage.core.host_sync import record_host_syncs
from anchorage.plugins.postprocess.batching import (
    batched_nms_on_device,
    clip_boxes,
    grouped_nms,
    image_bounds,
    per_image_top_n,
)


def test_per_image_top_n_keeps_rank_order_and_drops() -> None:
    image = torch.tensor([2, 0, 3, 2, 0, 2, 0, 0])  # 3 = dropped (b = 3); image 1 has none
    pos, sizes = per_image_top_n(image, 3, 2)
    assert (pos.tolist(), sizes) == ([1, 4, 0, 3], [2, 0, 2])
    assert pos.dtype == torch.int64
    pos, sizes = per_image_top_n(image, 3, 100)
    assert (pos.tolist(), sizes) == ([1, 4, 6, 7, 0, 3, 5], [4, 0, 3])


def test_per_image_top_n_empty() -> None:
    pos, sizes = per_image_top_n(torch.zeros(0, dtype=torch.int64), 2, 5)
    assert pos.numel() == 0 and sizes == [0, 0]
    pos, sizes = per_image_top_n(torch.tensor([2, 2]), 2, 5)  # all dropped
    assert pos.numel() == 0 and sizes == [0, 0]


@pytest.mark.parametrize(
    ("n", "per_group"),
    [(800, None), (3000, None), (3000, False)],  # one call; one per group; groups up to 1000
)
def test_grouped_nms_equals_batched_nms(n: int, per_group: bool | None) -> None:
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(n, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 2 + torch.rand(n, 2, generator=g) * 30], -1)
    scores = torch.rand(n, generator=g)
    group = torch.randint(0, 40, (n,), generator=g)
    expected = batched_nms(boxes.double(), scores.double(), group, 0.5)
    got = grouped_nms(boxes, scores, group, 0.5, per_group=per_group)
    assert 0 < len(got) < n
    assert torch.equal(got, expected)


@pytest.mark.parametrize("n", [300, 6000])  # below and above torchvision's 5,000-box switch
def test_group_nms_in_one_call_equals_nms_group_by_group(n: int) -> None:
    """The one-call path a GPU takes (forced here on the CPU): the survivors of NMS run
    within each group, best first, and no host read besides NMS itself."""
    g = torch.Generator().manual_seed(5)
    xy = torch.rand(n, 2, generator=g) * 300
    boxes = torch.cat([xy, xy + 2 + torch.rand(n, 2, generator=g) * 60], -1)
    scores = torch.rand(n, generator=g)
    groups = n // 22  # 273 at 6000: e.g. 3 images x 91 classes
    group = torch.randint(0, groups, (n,), generator=g)
    with record_host_syncs() as syncs:
        got = batched_nms_on_device(boxes, scores, group, 0.5, one_call=True)
    assert [s.op for s in syncs] == ["torchvision::nms"]
    expected = torch.cat(
        [
            (group == k).nonzero()[:, 0][
                nms(boxes[group == k].double(), scores[group == k].double(), 0.5)
            ]
            for k in range(groups)
        ]
    )
    expected = expected[scores[expected].argsort(descending=True, stable=True)]
    assert 0 < len(got) < n
    assert torch.equal(got, expected)


def test_clip_boxes_to_each_image_equals_torchvision() -> None:
    from torchvision.ops import clip_boxes_to_image

    boxes = torch.tensor(
        [[[-5.0, 3, 50, 90], [10, -2, 130, 40]], [[-1.0, -1, 5, 5], [7, 8, 9, 99]]]
    )
    sizes = [(80, 120), (60, 8)]
    got = clip_boxes(boxes, image_bounds(sizes, boxes)[:, None, :])
    for b, size in enumerate(sizes):
        assert torch.equal(got[b], clip_boxes_to_image(boxes[b], size))


def test_slices_merge_consecutive_groups() -> None:
    from anchorage.plugins.postprocess.batching import _slices

    assert _slices([3, 0, 4, 2, 9, 1], 0) == [(0, 3), (3, 7), (7, 9), (9, 18), (18, 19)]
    assert _slices([3, 0, 4, 2, 9, 1], 7) == [(0, 7), (7, 9), (9, 18), (18, 19)]
