import pytest
import torch
from torchvision.models.detection.ssd import SSD

from anchorage.core import build_component
from anchorage.core.interfaces import Assignment, DenseTargets


def _targets(cls: torch.Tensor, box_targets: torch.Tensor) -> DenseTargets:
    """DenseTargets with the given per-anchor labels and encoded targets (boxes unused)."""
    b, a = cls.shape
    anchors = torch.tensor([0.0, 0.0, 10.0, 10.0]).expand(a, 4)
    return DenseTargets(
        anchors=anchors,
        assignment=Assignment(torch.where(cls > 0, 0, -1)),
        labels=cls,
        boxes=anchors.expand(b, a, 4),
        box_targets=box_targets,
        box_coder=build_component("box_coder", {"type": "delta_xywh"}),
        num_classes=5,
    )


def _problem(seed: int, b: int = 3, a: int = 200, c: int = 5):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, a, c + 1, generator=g)
    deltas = torch.randn(b, a, 4, generator=g)
    box_targets = torch.randn(b, a, 4, generator=g)
    cls = torch.randint(1, c + 1, (b, a), generator=g)
    cls[torch.rand(b, a, generator=g) < 0.9] = 0
    cls[-1] = 0  # the last image has no positives
    return {"cls_logits": logits, "bbox_deltas": deltas}, cls, box_targets


def _torchvision_loss(predictions, cls, box_targets):
    """torchvision SSD.compute_loss on the same targets (identity coder via encoded targets)."""
    ssd = SSD.__new__(SSD)
    ssd.neg_to_pos_ratio = 3.0

    class Coder:
        @staticmethod
        def encode_single(matched_gt, anchors):
            return matched_gt

    ssd.box_coder = Coder()
    b, a = cls.shape
    targets, matched = [], []
    for i in range(b):
        fg = cls[i] > 0
        # one gt per positive anchor whose "box" is the encoded target itself
        targets.append({"boxes": box_targets[i][fg], "labels": cls[i][fg]})
        idx = torch.full((a,), -1, dtype=torch.int64)
        idx[fg] = torch.arange(int(fg.sum()))
        matched.append(idx)
    head = {"bbox_regression": predictions["bbox_deltas"], "cls_logits": predictions["cls_logits"]}
    return SSD.compute_loss(ssd, targets, head, [torch.zeros(a, 4)] * b, matched)


def test_multibox_equals_torchvision_compute_loss():
    loss = build_component("loss", {"type": "multibox"})
    for seed in range(3):
        predictions, cls, box_targets = _problem(seed)
        got = loss(predictions, _targets(cls, box_targets))
        expected = _torchvision_loss(predictions, cls, box_targets)
        torch.testing.assert_close(got["loss_classification"], expected["classification"])
        torch.testing.assert_close(got["loss_bbox_regression"], expected["bbox_regression"])


def test_hard_negatives_are_the_highest_loss_background_anchors():
    loss = build_component("loss", {"type": "multibox", "neg_pos_ratio": 2.0})
    logits = torch.zeros(1, 6, 2)
    logits[0, :, 1] = torch.tensor([5.0, 0.0, 4.0, 3.0, -1.0, 2.0])  # foreground scores
    cls = torch.tensor([[1, 0, 0, 0, 0, -1]])  # anchor 5 ignored despite a high score
    negatives = loss._hard_negatives(
        torch.nn.functional.cross_entropy(logits[0], cls[0].clamp(min=0), reduction="none")[None],
        cls,
    )
    assert negatives.tolist() == [[False, False, True, True, False, False]]


@pytest.mark.parametrize("name", ["multibox", "masked_l1"])
def test_no_boxes_anywhere_gives_finite_loss_and_gradients(name):
    loss = build_component("loss", {"type": name})
    predictions, cls, box_targets = _problem(0)
    cls = torch.zeros_like(cls)
    predictions = {k: v.requires_grad_() for k, v in predictions.items()}
    out = loss(predictions, _targets(cls, box_targets))
    total = sum(out.values())
    assert torch.isfinite(total)
    total.backward()
    assert all(torch.isfinite(v.grad).all() for v in predictions.values())


def test_masked_l1_values():
    loss = build_component("loss", {"type": "masked_l1"})
    predictions, cls, box_targets = _problem(2)
    out = loss(predictions, _targets(cls, box_targets))
    ce = torch.nn.functional.cross_entropy(predictions["cls_logits"].flatten(0, 1), cls.flatten())
    pos = (cls > 0)[..., None]
    l1 = ((predictions["bbox_deltas"] - box_targets).abs() * pos).mean()
    torch.testing.assert_close(out["loss_classification"], ce)
    torch.testing.assert_close(out["loss_bbox_regression"], l1)


def test_shape_mismatch_is_a_clear_error():
    predictions, cls, box_targets = _problem(0)
    with pytest.raises(ValueError, match="do not fit targets"):
        build_component("loss", {"type": "multibox"})(
            predictions, _targets(cls[:, :10], box_targets[:, :10])
        )
