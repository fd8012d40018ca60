"""RPN, box and mask heads: torchvision's layers, our flattening order."""

from __future__ import annotations

import torch
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead, concat_box_prediction_layers

from anchorage.core.build import build_component


def test_rpn_head_matches_torchvision_flattening() -> None:
    torch.manual_seed(0)
    head = build_component("head", {"type": "rpn_head"}, in_channels=8, num_anchors=3)
    tv = RPNHead(8, 3)
    tv.load_state_dict(head.state_dict())
    feats = {"p2": torch.rand(2, 8, 10, 12), "p3": torch.rand(2, 8, 5, 6)}
    out = head(feats)
    obj, deltas = concat_box_prediction_layers(*tv(list(feats.values())))
    torch.testing.assert_close(out["objectness"].reshape(-1, 1), obj)
    torch.testing.assert_close(out["bbox_deltas"].reshape(-1, 4), deltas)
    assert out["num_anchors_per_level"] == [360, 90]


def test_box_head_matches_torchvision() -> None:
    torch.manual_seed(0)
    head = build_component(
        "head",
        {"type": "two_mlp_box_head", "representation_size": 32},
        in_channels=4,
        resolution=7,
        num_classes=3,
    )
    mlp, pred = TwoMLPHead(4 * 49, 32), FastRCNNPredictor(32, 4)
    mlp.load_state_dict({k: v for k, v in head.state_dict().items() if k.startswith("fc")})
    pred.load_state_dict({k: v for k, v in head.state_dict().items() if not k.startswith("fc")})
    x = torch.rand(5, 4, 7, 7)
    out = head(x)
    logits, deltas = pred(mlp(x))
    torch.testing.assert_close(out["cls_logits"], logits)
    torch.testing.assert_close(out["bbox_deltas"], deltas)
    empty = head(torch.zeros(0, 4, 7, 7))
    assert empty["cls_logits"].shape == (0, 4) and empty["bbox_deltas"].shape == (0, 16)


def test_mask_head_matches_torchvision() -> None:
    torch.manual_seed(0)
    head = build_component(
        "head",
        {"type": "mask_head", "layers": [8, 8], "dim_reduced": 6},
        in_channels=4,
        num_classes=2,
    )
    convs, pred = MaskRCNNHeads(4, [8, 8], 1), MaskRCNNPredictor(8, 6, 3)
    state = head.state_dict()
    convs.load_state_dict(
        {k[len("convs.") :]: v for k, v in state.items() if k.startswith("convs.")}
    )
    pred.load_state_dict({k: v for k, v in state.items() if not k.startswith("convs.")})
    x = torch.rand(3, 4, 14, 14)
    torch.testing.assert_close(head(x)["mask_logits"], pred(convs(x)))
    assert head(x)["mask_logits"].shape == (3, 3, 28, 28)
