"""ltrb (torchvision BoxLinearCoder) and yolo box coders: exact inverses, torchvision numbers."""

import pytest
import torch
from torchvision.models.detection._utils import BoxLinearCoder

from anchorage.core import build_component


def test_ltrb_matches_torchvision_box_linear_coder():
    torch.manual_seed(0)
    anchors = torch.tensor([[0.0, 0.0, 8.0, 8.0], [16.0, 8.0, 32.0, 24.0]])
    gt = torch.tensor([[1.0, 2.0, 6.0, 7.0], [10.0, 0.0, 40.0, 30.0]])
    ours = build_component("box_coder", {"type": "ltrb"})
    tv = BoxLinearCoder(normalize_by_size=True)
    torch.testing.assert_close(ours.encode(gt, anchors), tv.encode(anchors, gt))
    deltas = torch.rand(2, 2, 4)
    torch.testing.assert_close(ours.decode(deltas, anchors), tv.decode(deltas, anchors))
    torch.testing.assert_close(ours.decode(ours.encode(gt, anchors), anchors), gt)


def test_yolo_coder_keeps_centres_in_the_cell_and_inverts():
    coder = build_component("box_coder", {"type": "yolo"})
    gen = build_component("anchor_generator", {"type": "yolo_anchors"})
    levels = gen.anchors((64, 64), [(8, 8), (4, 4), (2, 2)], (8, 16, 32))
    anchors, stride = levels.boxes, levels.anchor_strides()
    deltas = (torch.randn(1, anchors.shape[0], 4) * 2).clamp(-3.5, 3.5)
    boxes = coder.decode(deltas, anchors, stride)[0]
    ac = (anchors[:, :2] + anchors[:, 2:]) / 2
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    strides = torch.tensor([8.0] * 192 + [16.0] * 48 + [32.0] * 12)[:, None]
    assert torch.equal(stride[:, None], strides)
    assert ((centre - ac).abs() <= strides / 2).all()
    assert ((centre - ac).abs() > strides / 4).any()  # offsets do reach across the cell
    encoded = coder.encode(boxes, anchors, stride)
    torch.testing.assert_close(encoded, deltas[0], atol=2e-3, rtol=1e-3)
    wh = (boxes[:, 2:] - boxes[:, :2]) / (anchors[:, 2:] - anchors[:, :2])
    torch.testing.assert_close(wh.log(), deltas[0, :, 2:], atol=1e-4, rtol=1e-4)


def test_yolo_coder_refuses_references_without_strides():
    """Geometry travels with the anchors: without strides (proposals) the coder says so
    instead of guessing a cell side from the box position."""
    coder = build_component("box_coder", {"type": "yolo"})
    box = torch.tensor([[0.0, 0.0, 8.0, 8.0]])
    for call in (coder.encode, coder.decode):
        with pytest.raises(ValueError, match="needs the stride of each reference"):
            call(box, box)
