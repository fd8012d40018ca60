"""``accuracy`` (top-k via torchmetrics, per-class, confusion-matrix picture) and ``box_iou``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from anchorage.core.build import build_component
from anchorage.core.errors import DataError


def metric(kind: str, **params):
    return build_component("metric", {"type": kind, **params}, class_names=("a", "b", "c"))


def outputs(probs: list[list[float]]) -> list[dict]:
    return [{"probs": torch.tensor(p)} for p in probs]


PROBS = [[0.6, 0.3, 0.1], [0.5, 0.1, 0.4], [0.2, 0.3, 0.5], [0.05, 0.8, 0.15]]
LABELS = [1, 3, 3, 1]  # top-1 right: 1st, 3rd; top-2 right: 1st, 2nd, 3rd


def test_topk_and_per_class_accuracy() -> None:
    m = metric("accuracy", topk=(1, 2, 5))
    m.update(outputs(PROBS[:2]), [{"label": torch.tensor(c)} for c in LABELS[:2]])
    m.update(outputs(PROBS[2:]), [{"label": torch.tensor(c)} for c in LABELS[2:]])
    res = m.compute()
    assert res["cls/top1"] == pytest.approx(0.5)
    assert res["cls/top2"] == pytest.approx(0.75)
    assert res["cls/top5"] == pytest.approx(1.0)  # k capped at C
    assert res["cls/mean_acc"] == pytest.approx((0.5 + 0.5) / 2)  # class b never occurs
    table = m.summary()
    assert "a " in table and "nan" in table.splitlines()[3]  # b: no image


def test_detection_targets_count_their_first_label() -> None:
    m = metric("accuracy", topk=(1,))
    targets = [{"labels": torch.tensor([1])}, {"labels": torch.zeros(0, dtype=torch.int64)}]
    m.update(outputs(PROBS[:2]), targets)
    assert m.compute()["cls/top1"] == 1.0  # the image without an object is not counted


def test_missing_probs_and_bad_labels_are_data_errors() -> None:
    m = metric("accuracy")
    with pytest.raises(DataError, match="needs 'probs'"):
        m.update([{"labels": torch.tensor([1])}], [{"label": torch.tensor(1)}])
    with pytest.raises(DataError, match="expected labels 1..3"):
        m.update(outputs(PROBS[:1]), [{"label": torch.tensor(4)}])


def test_confusion_matrix_picture(tmp_path: Path) -> None:
    m = metric("accuracy")
    assert m.write_pictures(tmp_path) == []  # nothing counted yet
    m.update(outputs(PROBS), [{"label": torch.tensor(c)} for c in LABELS])
    m.compute()
    (path,) = m.write_pictures(tmp_path)
    assert path == tmp_path / "confusion_matrix.png"
    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) > 100
    assert torch.equal(m._matrix, torch.tensor([[1, 1, 0], [0, 0, 0], [1, 0, 1]]))


def test_box_iou_and_localization_accuracy() -> None:
    m = metric("box_iou")
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    half = torch.tensor([[0.0, 0.0, 10.0, 5.0]])
    outs = [
        {"boxes": box, "labels": torch.tensor([1])},
        {"boxes": half, "labels": torch.tensor([2])},
        {"boxes": box, "labels": torch.tensor([2])},
    ]
    targets = [
        {"boxes": box, "labels": torch.tensor([1])},  # IoU 1, right class
        {"boxes": box, "labels": torch.tensor([2])},  # IoU 0.5, right class
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # skipped
    ]
    m.update(outs, targets)
    res = m.compute()
    assert res == {"loc/mIoU": pytest.approx(0.75), "loc/IoU50": 1.0, "loc/acc": 1.0}
    assert "2 images" in m.summary()
