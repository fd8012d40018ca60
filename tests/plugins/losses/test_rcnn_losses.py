"""R-CNN losses: torchvision's arithmetic; finite with nothing sampled; clear size errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import fastrcnn_loss

from anchorage.core.build import build_component


def test_fast_rcnn_loss_equals_torchvision() -> None:
    g = torch.Generator().manual_seed(0)
    logits, deltas = torch.randn(10, 4, generator=g), torch.randn(10, 16, generator=g)
    labels, targets = torch.tensor([0, 1, 3, 0, 2, 0, 0, 1, 0, 0]), torch.randn(10, 4, generator=g)
    ours = build_component("loss", {"type": "fast_rcnn_loss"})(logits, deltas, labels, targets)
    cls, box = fastrcnn_loss(logits, deltas, [labels[:6], labels[6:]], [targets[:6], targets[6:]])
    torch.testing.assert_close(ours["loss_classifier"], cls)
    torch.testing.assert_close(ours["loss_box_reg"], box)


def test_rpn_loss_terms() -> None:
    g = torch.Generator().manual_seed(0)
    obj, deltas, targets = (
        torch.randn(2, 20, generator=g),
        torch.randn(2, 20, 4, generator=g),
        torch.randn(2, 20, 4, generator=g),
    )
    pos = torch.zeros(2, 20, dtype=torch.bool)
    neg = torch.zeros(2, 20, dtype=torch.bool)
    pos[0, :3], neg[0, 5:9], neg[1, :6] = True, True, True
    out = build_component("loss", {"type": "rpn_loss"})(obj, deltas, pos, neg, targets)
    sampled = pos | neg
    want = F.binary_cross_entropy_with_logits(obj[sampled], pos[sampled].float())
    torch.testing.assert_close(out["loss_objectness"], want)
    box = F.smooth_l1_loss(deltas[pos], targets[pos], beta=1 / 9, reduction="sum") / 13
    torch.testing.assert_close(out["loss_rpn_box_reg"], box)


def test_nothing_sampled_gives_finite_zero_with_grad() -> None:
    obj = torch.randn(1, 5, requires_grad=True)
    deltas = torch.randn(1, 5, 4, requires_grad=True)
    none = torch.zeros(1, 5, dtype=torch.bool)
    out = build_component("loss", {"type": "rpn_loss"})(
        obj, deltas, none, none, torch.full((1, 5, 4), float("nan"))
    )
    total = sum(out.values())
    total.backward()
    assert float(total.detach()) == 0 and torch.isfinite(obj.grad).all()
    logits = torch.randn(0, 3, requires_grad=True)
    out = build_component("loss", {"type": "fast_rcnn_loss"})(
        logits, torch.zeros(0, 12), torch.zeros(0, dtype=torch.long), torch.zeros(0, 4)
    )
    assert all(torch.isfinite(v) and float(v.detach()) == 0 for v in out.values())
    mask = build_component("loss", {"type": "mask_rcnn_loss"})
    out = mask(
        torch.randn(0, 3, 28, 28, requires_grad=True),
        torch.zeros(0, dtype=torch.long),
        torch.zeros(0, 28, 28),
    )
    assert float(out["loss_mask"].detach()) == 0


def test_mask_loss_picks_gt_class_and_checks_size() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 28, 28, generator=g)
    labels, targets = torch.tensor([2, 1]), (torch.rand(2, 28, 28, generator=g) > 0.5).float()
    loss = build_component("loss", {"type": "mask_rcnn_loss"})
    want = F.binary_cross_entropy_with_logits(logits[[0, 1], [2, 1]], targets)
    torch.testing.assert_close(loss(logits, labels, targets)["loss_mask"], want)
    with pytest.raises(ValueError, match="mask targets"):
        loss(logits, labels, torch.zeros(2, 14, 14))
