"""voc_ap (11-point and all-point) on a hand-computed case; seg_miou against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anchorage.core.build import build_component
from anchorage.core.errors import DataError


def _t(image_id, boxes, labels, crowd=None):
    n = len(labels)
    return {
        "image_id": image_id,
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "iscrowd": torch.tensor(crowd or [0] * n, dtype=torch.int64),
    }


def _o(boxes, scores, labels):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


A, D, B = [0, 0, 10, 10], [20, 20, 30, 30], [5, 5, 15, 15]


def test_voc_ap_hand_computed():
    metric = build_component("metric", {"type": "voc_ap"}, class_names=("x", "y"))
    targets = [_t(1, [A, D], [1, 1], crowd=[0, 1]), _t(2, [B], [1]), _t(3, [], [])]
    outputs = [
        # tp (0.9), duplicate fp (0.8), on the difficult box: ignored (0.7)
        _o([A, [0, 0, 10, 9], D], [0.9, 0.8, 0.7], [1, 1, 1]),
        _o([B, [40, 40, 50, 50]], [0.6, 0.5], [1, 1]),  # tp, fp
        _o([A], [0.95], [2]),  # class without gt: left out of the mean
    ]
    metric.update(outputs[:2], targets[:2])
    metric.update(outputs[2:], targets[2:])
    # ranked tp, fp, tp, fp with 2 positives: recall .5 .5 1 1, precision 1 .5 2/3 .5
    res = metric.compute()
    assert res["voc/mAP"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert res["voc/mAP11"] == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    rows = metric.per_class()
    assert rows[0][3] == 2 and np.isnan(rows[1][1])
    assert "x" in metric.summary()


def test_voc_ap_iou_threshold_and_merge():
    metric = build_component("metric", {"type": "voc_ap", "iou_threshold": 0.7}, class_names=("x",))
    metric.update([_o([[0, 0, 10, 7]], [0.9], [1])], [_t(1, [A], [1])])  # IoU 0.7: not above
    assert metric.compute()["voc/mAP"] == 0.0
    other = build_component("metric", {"type": "voc_ap", "iou_threshold": 0.7}, class_names=("x",))
    other.update([_o([B], [0.9], [1])], [_t(2, [B], [1])])
    metric.merge_state(other)
    assert metric.compute()["voc/mAP"] == pytest.approx(0.5)


def _numpy_miou(pred, gt, k):
    keep = gt != 255
    cm = np.bincount(gt[keep] * k + pred[keep], minlength=k * k).reshape(k, k)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    return np.nanmean(np.where(union > 0, tp / np.maximum(union, 1), np.nan)), tp.sum() / cm.sum()


def _seg(logits):
    return [{"sem_seg": lg} for lg in logits]


def test_seg_miou_matches_numpy_and_ignores_255():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 12, 16, generator=g)
    gt = torch.randint(0, 4, (2, 12, 16), generator=g)
    gt[0, :3] = 255
    gt[1, 5:, 8:] = logits[1].argmax(0)[5:, 8:]  # some agreement
    metric = build_component("metric", {"type": "seg_miou"}, class_names=("a", "b", "c"))
    targets = [{"semantic_mask": gt[0]}, {"semantic_mask": gt[1]}]
    metric.update(_seg(logits), targets)
    miou, acc = _numpy_miou(logits.argmax(1).numpy().ravel(), gt.numpy().ravel(), 4)
    res = metric.compute()
    assert res["seg/mIoU"] == pytest.approx(miou) and res["seg/pixel_acc"] == pytest.approx(acc)
    assert "background" in metric.summary()
    # merging two halves (the cross-rank reduction) equals one pass
    a = build_component("metric", {"type": "seg_miou"}, class_names=("a", "b", "c"))
    b = build_component("metric", {"type": "seg_miou"}, class_names=("a", "b", "c"))
    a.update(_seg(logits[:1]), targets[:1])
    b.update(_seg(logits[1:]), targets[1:])
    a.merge_state(b)
    assert a.compute() == res


def test_seg_miou_equals_the_padded_batch_numbers_on_the_same_predictions():
    """Images of different sizes: per-image outputs at each image's size give the numbers
    that the earlier padded ``[B,K,H,W]`` output, cropped to each target, gave."""
    g = torch.Generator().manual_seed(1)
    padded = torch.randn(2, 3, 10, 14, generator=g)
    sizes = [(10, 9), (7, 14)]
    gts = [torch.randint(0, 3, size, generator=g) for size in sizes]
    gts[1][0] = 255
    metric = build_component("metric", {"type": "seg_miou", "num_classes": 3})
    metric.update(
        [{"sem_seg": p[:, :h, :w]} for p, (h, w) in zip(padded, sizes)],
        [{"semantic_mask": t} for t in gts],
    )
    pred = np.concatenate([p.argmax(0)[:h, :w].numpy().ravel() for p, (h, w) in zip(padded, sizes)])
    miou, acc = _numpy_miou(pred, np.concatenate([t.numpy().ravel() for t in gts]), 3)
    res = metric.compute()
    assert res["seg/mIoU"] == pytest.approx(miou, abs=1e-12)
    assert res["seg/pixel_acc"] == pytest.approx(acc, abs=1e-12)


def test_seg_miou_checks_sizes_keys_and_labels():
    metric = build_component("metric", {"type": "seg_miou", "num_classes": 2})
    logits = torch.zeros(2, 4, 4)
    logits[1] = 1.0
    metric.update([{"sem_seg": logits}], [{"semantic_mask": torch.ones(4, 4, dtype=torch.int64)}])
    assert metric.compute()["seg/pixel_acc"] == 1.0
    with pytest.raises(DataError, match="a model returns logits at its input image's size"):
        metric.update([{"sem_seg": torch.zeros(2, 8, 8)}], [{"semantic_mask": torch.ones(4, 4)}])
    with pytest.raises(DataError, match="sem_seg"):
        metric.update([{"boxes": torch.zeros(0, 4)}], [{"semantic_mask": torch.ones(4, 4)}])
    with pytest.raises(ValueError, match="outside 0..1"):
        metric.update([{"sem_seg": logits}], [{"semantic_mask": torch.full((4, 4), 3)}])
