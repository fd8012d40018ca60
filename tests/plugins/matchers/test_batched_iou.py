import pytest
import torch
from torchvision.ops import box_iou

from anchorage.core.interfaces.matching import batched_box_iou


def _boxes(n: int, g: torch.Generator, scale: float = 100.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * scale
    return torch.cat([xy, xy + 1 + torch.rand(n, 2, generator=g) * scale / 2], -1)


def test_matches_torchvision_box_iou_and_masks_invalid_rows():
    g = torch.Generator().manual_seed(0)
    gt = torch.stack([_boxes(5, g), _boxes(5, g)])
    valid = torch.tensor([[True] * 5, [True, True, False, False, False]])
    anchors = _boxes(40, g)
    iou = batched_box_iou(gt, valid, anchors)
    assert iou.shape == (2, 5, 40)
    assert torch.equal(iou[0], box_iou(gt[0], anchors))
    assert torch.equal(iou[1, :2], box_iou(gt[1, :2], anchors))
    assert (iou[1, 2:] == -1).all()


def test_per_image_references():
    g = torch.Generator().manual_seed(1)
    gt = torch.stack([_boxes(3, g), _boxes(3, g)])
    refs = torch.stack([_boxes(20, g), _boxes(20, g)])
    valid = torch.ones(2, 3, dtype=torch.bool)
    iou = batched_box_iou(gt, valid, refs)
    for b in range(2):
        torch.testing.assert_close(iou[b], box_iou(gt[b], refs[b]))


def test_empty_gt_and_bad_shapes():
    anchors = _boxes(7, torch.Generator().manual_seed(2))
    assert batched_box_iou(
        torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.bool), anchors
    ).shape == (
        2,
        0,
        7,
    )
    with pytest.raises(ValueError, match="anchors must be"):
        batched_box_iou(torch.zeros(2, 1, 4), torch.ones(2, 1, dtype=torch.bool), anchors[None])
    with pytest.raises(ValueError, match="expected gt"):
        batched_box_iou(torch.zeros(1, 4), torch.ones(1, dtype=torch.bool), anchors)
