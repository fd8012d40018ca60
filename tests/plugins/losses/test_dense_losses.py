"""Box losses (smooth_l1, l1, giou, diou) and the sigmoid_focal dense loss."""

import pytest
import torch
from torchvision.ops import distance_box_iou_loss, generalized_box_iou_loss, sigmoid_focal_loss

from anchorage.core import build_component
from anchorage.core.host_sync import record_host_syncs
from anchorage.core.interfaces import Anchors, Assignment, DenseTargets, GroundTruth

C = 3


def _problem(seed: int, empty: bool = False):
    """Anchors [A,4], padded gt, a max_iou assignment, predictions with grad."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(60, 2, generator=g) * 60
    anchors = Anchors.single_level(
        torch.cat([xy, xy + 6 + torch.rand(60, 2, generator=g) * 20], -1)
    )
    gxy = torch.rand(2, 3, 2, generator=g) * 50
    boxes = torch.cat([gxy, gxy + 8 + torch.rand(2, 3, 2, generator=g) * 20], -1)
    valid = torch.tensor([[True, True, True], [True, False, False]]) & (not empty)
    gt = GroundTruth(boxes, torch.randint(1, C + 1, (2, 3), generator=g), valid)
    matcher = build_component(
        "matcher",
        {"type": "max_iou", "high_threshold": 0.3, "low_threshold": 0.2, "keep_best_anchor": True},
    )
    coder = build_component("box_coder", {"type": "delta_xywh"})
    targets = DenseTargets.from_assignment(anchors, gt, matcher(anchors, gt), coder, C)
    predictions = {
        "cls_logits": torch.randn(2, 60, C, generator=g).requires_grad_(),
        "bbox_deltas": (0.1 * torch.randn(2, 60, 4, generator=g)).requires_grad_(),
    }
    return predictions, targets


def test_problem_has_positives_negatives_and_ignored():
    _, targets = _problem(0)
    assert (targets.labels > 0).sum() >= 3 and (targets.labels == 0).any()
    assert (targets.labels == -1).any()


@pytest.mark.parametrize(
    "name,reference",
    [("giou", generalized_box_iou_loss), ("diou", distance_box_iou_loss)],
)
def test_iou_losses_equal_torchvision_on_decoded_boxes(name, reference):
    predictions, targets = _problem(1)
    deltas = predictions["bbox_deltas"]
    got = build_component("loss", {"type": name})(deltas, targets)
    decoded = targets.decode(deltas)
    pos = targets.positive
    expected = reference(decoded[pos], targets.boxes[pos], reduction="none")
    torch.testing.assert_close(got[pos], expected)
    assert got.shape == (2, 60) and torch.isfinite(got).all()
    got[pos].sum().backward()
    assert deltas.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "name,reference",
    [("giou", generalized_box_iou_loss), ("diou", distance_box_iou_loss)],
)
def test_iou_losses_equal_torchvision_bit_for_bit_without_host_syncs(name, reference):
    """Overlapping, disjoint, touching and identical pairs: same values and gradients as
    torchvision's, and none of its boolean-mask syncs."""
    g = torch.Generator().manual_seed(4)
    xy = torch.rand(400, 2, generator=g) * 60
    boxes = torch.cat([xy, xy + torch.rand(400, 2, generator=g) * 30 + 0.1], 1)
    xy = torch.rand(400, 2, generator=g) * 60
    gt = torch.cat([xy, xy + torch.rand(400, 2, generator=g) * 30 + 0.1], 1)
    gt[:5] = boxes[:5]
    gt[5:10, 0] = boxes[5:10, 2]  # touching: zero-width intersection
    loss = build_component("loss", {"type": name})
    ours, theirs = boxes.clone().requires_grad_(), boxes.clone().requires_grad_()
    with record_host_syncs() as syncs:
        got = loss.pairwise(ours, gt)
        got.sum().backward()
    expected = reference(theirs, gt, reduction="none", eps=1e-7)
    expected.sum().backward()
    assert syncs == []
    assert (got > 1).any() and torch.equal(got, expected)
    assert torch.equal(ours.grad, theirs.grad)


def test_l1_and_smooth_l1_on_encoded_targets():
    predictions, targets = _problem(2)
    deltas = predictions["bbox_deltas"]
    l1 = build_component("loss", {"type": "l1"})(deltas, targets)
    torch.testing.assert_close(l1, (deltas - targets.box_targets).abs().sum(-1))
    beta = 0.5
    smooth = build_component("loss", {"type": "smooth_l1", "beta": beta})(deltas, targets)
    d = (deltas - targets.box_targets).abs()
    expected = torch.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta).sum(-1)
    torch.testing.assert_close(smooth, expected)


def _focal_reference(predictions, targets, box):
    """torchvision RetinaNet's normalisation: per image, sums over positives / #positives."""
    cls_terms, box_terms = [], []
    for b in range(targets.labels.shape[0]):
        labels = targets.labels[b]
        valid, pos = labels >= 0, labels > 0
        onehot = torch.zeros_like(predictions["cls_logits"][b])
        onehot[pos, labels[pos] - 1] = 1.0
        n = max(1, int(pos.sum()))
        cls_terms.append(
            sigmoid_focal_loss(predictions["cls_logits"][b][valid], onehot[valid], reduction="sum")
            / n
        )
        box_terms.append(box[b][pos].sum() / n)
    return torch.stack(cls_terms).mean(), torch.stack(box_terms).mean()


def test_sigmoid_focal_equals_torchvision_focal_loss():
    predictions, targets = _problem(3)
    loss = build_component("loss", {"type": "sigmoid_focal"})
    got = loss(predictions, targets)
    l1 = (predictions["bbox_deltas"] - targets.box_targets).abs().sum(-1)
    cls, box = _focal_reference(predictions, targets, l1)
    torch.testing.assert_close(got["loss_classification"], cls)
    torch.testing.assert_close(got["loss_bbox_regression"], box)
    batch = build_component("loss", {"type": "sigmoid_focal", "normalize": "batch"})(
        predictions, targets
    )
    n = targets.positive.sum()
    valid = targets.labels >= 0
    onehot = torch.nn.functional.one_hot(targets.labels.clamp(min=0), C + 1)[..., 1:].float()
    expected = (
        sigmoid_focal_loss(predictions["cls_logits"][valid], onehot[valid], reduction="sum") / n
    )
    torch.testing.assert_close(batch["loss_classification"], expected)


def test_sigmoid_focal_drops_a_background_column():
    predictions, targets = _problem(4)
    with_bg = {
        **predictions,
        "cls_logits": torch.cat([torch.full((2, 60, 1), 9.0), predictions["cls_logits"]], -1),
    }
    loss = build_component("loss", {"type": "sigmoid_focal"})
    torch.testing.assert_close(loss(with_bg, targets), loss(predictions, targets))
    bad = {**predictions, "cls_logits": predictions["cls_logits"][..., :2]}
    with pytest.raises(ValueError, match="expected C = 3"):
        loss(bad, targets)


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "sigmoid_focal"},
        {"type": "sigmoid_focal", "box_loss": {"type": "giou"}},
        {"type": "multibox", "box_loss": {"type": "diou"}},
        {"type": "multibox", "box_loss": {"type": "smooth_l1"}},
        {"type": "masked_l1"},
    ],
)
@pytest.mark.parametrize("empty", [False, True])
def test_dense_losses_finite_with_gradients(spec, empty):
    predictions, targets = _problem(5, empty=empty)
    if spec["type"] != "sigmoid_focal":  # softmax layout: a background column
        predictions["cls_logits"] = torch.randn(2, 60, C + 1).requires_grad_()
    out = build_component("loss", spec)(predictions, targets)
    assert set(out) == {"loss_classification", "loss_bbox_regression"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in out.values())
    sum(out.values()).backward()
    if not (empty and spec["type"] == "multibox"):  # SSD mines no negatives without positives
        assert predictions["cls_logits"].grad.abs().sum() > 0
    for p in predictions.values():
        assert torch.isfinite(p.grad).all()
    if not empty:
        assert predictions["bbox_deltas"].grad.abs().sum() > 0
    else:
        assert float(out["loss_bbox_regression"].detach()) == 0.0


def test_assignment_weights_scale_the_box_term():
    predictions, targets = _problem(6)
    loss = build_component("loss", {"type": "sigmoid_focal"})
    plain = loss(predictions, targets)["loss_bbox_regression"]
    weights = torch.full(targets.labels.shape, 0.5)
    halved = DenseTargets(
        targets.anchors,
        Assignment(targets.assignment.matched, weights),
        targets.labels,
        targets.boxes,
        targets.box_targets,
        targets.box_coder,
        targets.num_classes,
    )
    torch.testing.assert_close(loss(predictions, halved)["loss_bbox_regression"], plain / 2)
