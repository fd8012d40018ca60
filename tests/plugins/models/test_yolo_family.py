"""YOLO on the dense skeleton: yolo_grid assignment, yolo loss, yolo_nms, and the spec trains."""

from __future__ import annotations

import torch

from anchorage.core import build_component, build_model, load_spec
from anchorage.core.interfaces import Anchors, DenseTargets, GroundTruth

SHAPES = [[[8, 8], [16, 16]], [[24, 24], [32, 32]], [[48, 48], [60, 60]]]
FEATURES = [(8, 8), (4, 4), (2, 2)]


def _anchors() -> Anchors:
    gen = build_component("anchor_generator", {"type": "yolo_anchors", "shapes": SHAPES})
    levels = gen((64, 64), FEATURES, per_level=True)
    return Anchors(torch.cat(levels), tuple(len(lv) for lv in levels), (8, 16, 32))


def _gt(boxes: list[list[float]], labels: list[int], valid: list[bool] | None = None):
    b = torch.tensor([boxes])
    return GroundTruth(b, torch.tensor([labels]), torch.tensor([valid or [True] * len(labels)]))


def test_gt_goes_to_its_centre_cell_and_best_shape():
    matcher = build_component("matcher", {"type": "yolo_grid"})
    anchors = _anchors()
    gt = _gt([[5.0, 21.0, 35.0, 51.0], [0.0, 0.0, 10.0, 10.0]], [1, 2], [True, False])
    matched = matcher(anchors, gt).matched[0]
    # centre (20, 36), 30x30 → shape 32x32 (level 1, shape 1), cell row 36//16=2, col 20//16=1
    index = 8 * 8 * 2 + (2 * 4 + 1) * 2 + 1
    assert matched[index] == 0
    assert (matched >= 0).sum() == 1  # the invalid (crowd) box takes nothing
    assert (matched == -1).sum() == matched.numel() - 1


def test_predictions_overlapping_a_gt_are_ignored_not_negative():
    matcher = build_component("matcher", {"type": "yolo_grid", "ignore_iou": 0.5})
    coder = build_component("box_coder", {"type": "yolo"})
    anchors = _anchors()
    box = torch.tensor([[5.0, 21.0, 35.0, 51.0]])
    strides = anchors.anchor_strides()
    deltas = coder.encode(box.expand(len(anchors.boxes), 4), anchors.boxes, strides)[None]
    out = matcher(anchors, _gt(box.tolist(), [1]), predictions={"bbox_deltas": deltas}).matched[0]
    decoded = coder.decode(deltas, anchors.boxes, strides)[0]
    from torchvision.ops import box_iou

    overlaps = box_iou(decoded, box)[:, 0] > 0.5
    assert (out >= 0).sum() == 1 and overlaps[out >= 0].all()
    assert torch.equal(out == -2, overlaps & (out < 0)) and (out == -2).any()
    assert (out == -1).any()  # far cells cannot reach the box: still negatives


def _targets(anchors: Anchors, gt: GroundTruth, matcher, coder) -> DenseTargets:
    return DenseTargets.from_assignment(anchors, gt, matcher(anchors, gt), coder, 3)


def test_yolo_loss_terms_are_finite_and_prefer_right_predictions():
    loss = build_component("loss", {"type": "yolo"})
    coder = build_component("box_coder", {"type": "yolo"})
    matcher = build_component("matcher", {"type": "yolo_grid"})
    anchors = _anchors()
    a = len(anchors.boxes)
    empty = GroundTruth(
        torch.zeros(1, 0, 4),
        torch.zeros(1, 0, dtype=torch.int64),
        torch.zeros(1, 0, dtype=torch.bool),
    )
    obj = torch.zeros(1, a, requires_grad=True)
    preds = {
        "objectness": obj,
        "cls_logits": torch.zeros(1, a, 3),
        "bbox_deltas": torch.zeros(1, a, 4),
    }
    terms = loss(preds, _targets(anchors, empty, matcher, coder))
    assert set(terms) == {"loss_objectness", "loss_classification", "loss_bbox_regression"}
    assert all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    assert obj.grad is not None and (obj.grad > 0).all()  # only negatives: push objectness down
    gt = _gt([[5.0, 21.0, 35.0, 51.0]], [2])
    targets = _targets(anchors, gt, matcher, coder)
    good = {
        "objectness": torch.where(targets.positive, 12.0, -12.0),
        "cls_logits": torch.where(torch.arange(3) == 1, 8.0, -8.0).expand(1, a, 3),
        "bbox_deltas": targets.box_targets,
    }
    bad = {"objectness": -good["objectness"], "cls_logits": -good["cls_logits"],
           "bbox_deltas": torch.zeros(1, a, 4)}  # fmt: skip
    good_terms, bad_terms = loss(good, targets), loss(bad, targets)
    for k in good_terms:
        assert good_terms[k] < 0.05 < bad_terms[k], k


def test_yolo_nms_scores_objectness_times_class_and_suppresses_at_0_6():
    coder = build_component("box_coder", {"type": "yolo"})
    post = build_component(
        "postprocessor", {"type": "yolo_nms", "score_thresh": 0.1}, box_coder=coder
    )
    anchors = _anchors()
    a = len(anchors.boxes)
    boxes = torch.tensor(
        [[10.0, 10.0, 40.0, 40.0], [10.0, 13.0, 40.0, 43.0], [10.0, 22.0, 40.0, 52.0]]
    )
    # level 1 (stride 16) cells holding the centres (25, 25), (25, 28), (25, 37)
    cells = torch.tensor(
        [128 + (1 * 4 + 1) * 2 + 1, 128 + (1 * 4 + 1) * 2, 128 + (2 * 4 + 1) * 2 + 1]
    )
    deltas = torch.zeros(1, a, 4)
    deltas[0, cells] = coder.encode(boxes, anchors.boxes[cells], anchors.anchor_strides()[cells])
    obj = torch.full((1, a), -10.0)
    obj[0, cells] = torch.tensor([3.0, 2.0, 1.0])
    cls = torch.full((1, a, 3), -10.0)
    cls[0, cells, 0] = 2.0
    out = post({"objectness": obj, "cls_logits": cls, "bbox_deltas": deltas}, anchors, [(64, 64)])[
        0
    ]
    # box 1 overlaps box 0 at IoU 0.82 (removed); box 2 at IoU 0.43 (kept)
    assert out["labels"].tolist() == [1, 1]
    expected = torch.sigmoid(torch.tensor([3.0, 1.0])) * torch.sigmoid(torch.tensor(2.0))
    torch.testing.assert_close(out["scores"], expected)
    torch.testing.assert_close(out["boxes"], boxes[[0, 2]], atol=1e-3, rtol=0)


def test_yolo_shapes_trains_at_several_sizes_and_infers_at_its_fixed_size():
    torch.manual_seed(0)
    model = build_model(load_spec("specs/yolo_shapes.yaml")).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    batches = []
    for size in (96, 160, 128):  # multi-scale batches as the data pipeline gives them
        s = size / 128
        boxes = torch.tensor([[10.0, 20.0, 50.0, 60.0], [60.0, 62.0, 110.0, 100.0]]) * s
        images = [torch.rand(3, size, size, generator=g) * 0.2 for _ in range(2)]
        for im, (x1, y1, x2, y2) in zip(images, boxes.round().int().tolist()):
            im[:, y1:y2, x1:x2] = 0.9
        targets = [{"boxes": boxes[i : i + 1], "labels": torch.tensor([i + 1])} for i in range(2)]
        batches.append((images, targets))
    first = last = None
    for step in range(24):
        images, targets = batches[step % 3]
        losses = model(images, targets)
        total = sum(losses.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        first = float(total.detach()) if first is None else first
        last = float(total.detach())
    assert last < 0.5 * first
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 90, 150)])[0]
    assert set(out) == {"boxes", "scores", "labels"}
    assert ((out["boxes"][:, 2] <= 150) & (out["boxes"][:, 3] <= 90)).all()
