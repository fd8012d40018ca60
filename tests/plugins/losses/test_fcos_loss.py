"""``fcos`` loss: the centerness target comes from the boxes, not from the box coder."""

from __future__ import annotations

import torch

from anchorage.core import build_component
from anchorage.core.interfaces import Anchors, DenseTargets, GroundTruth
from anchorage.plugins.losses.fcos import centerness_target, point_to_sides

C = 3


def _targets(coder: str) -> DenseTargets:
    """Points as small anchors, gt boxes, a max_iou assignment encoded by ``coder``."""
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(80, 2, generator=g) * 60
    anchors = Anchors.single_level(
        torch.cat([xy, xy + 4 + torch.rand(80, 2, generator=g) * 16], -1)
    )
    gxy = torch.rand(2, 3, 2, generator=g) * 40
    boxes = torch.cat([gxy, gxy + 10 + torch.rand(2, 3, 2, generator=g) * 20], -1)
    valid = torch.tensor([[True, True, True], [True, False, False]])
    gt = GroundTruth(boxes, torch.randint(1, C + 1, (2, 3), generator=g), valid)
    matcher = build_component(
        "matcher",
        {"type": "max_iou", "high_threshold": 0.3, "low_threshold": 0.2, "keep_best_anchor": True},
    )
    box_coder = build_component("box_coder", {"type": coder})
    return DenseTargets.from_assignment(anchors, gt, matcher(anchors, gt), box_coder, C)


def _predictions() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "cls_logits": torch.randn(2, 80, C, generator=g).requires_grad_(),
        "bbox_deltas": (0.1 * torch.randn(2, 80, 4, generator=g)).requires_grad_(),
        "centerness": torch.randn(2, 80, 1, generator=g).requires_grad_(),
    }


def test_centerness_term_does_not_depend_on_the_box_coder() -> None:
    """With ``delta_xywh`` targets the term used to read deltas as distances (NaN)."""
    loss = build_component("loss", {"type": "fcos"})
    ltrb, xywh = _targets("ltrb"), _targets("delta_xywh")
    assert torch.equal(ltrb.labels, xywh.labels) and ltrb.positive.any()
    a = loss(_predictions(), ltrb)["loss_bbox_ctrness"]
    b = loss(_predictions(), xywh)["loss_bbox_ctrness"]
    assert torch.isfinite(a) and a > 0
    torch.testing.assert_close(a, b)


def test_geometric_target_equals_the_ltrb_encoded_one_inside_the_box() -> None:
    """For a centre inside its box the distances from the ``ltrb`` coder (divided by the
    anchor size) give torchvision's centerness; the geometric one is the same."""
    targets = _targets("ltrb")
    centres = targets.anchors.centres
    sides = point_to_sides(centres, targets.boxes)  # [B,A,4]
    inside = targets.positive & (sides > 0).all(-1)
    assert inside.any()
    torch.testing.assert_close(
        centerness_target(sides)[inside], centerness_target(targets.box_targets)[inside]
    )


def test_centre_outside_its_box_has_zero_centerness() -> None:
    sides = torch.tensor([[-2.0, 3, 5, 4], [2.0, 2, 2, 2], [0.0, 0, 0, 0]])
    out = centerness_target(sides)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.tensor([0.0, 1.0, 0.0]))
