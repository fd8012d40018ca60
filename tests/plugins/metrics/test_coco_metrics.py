"""coco_bbox / coco_segm equal a direct pycocotools COCOeval call on the same predictions."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from anchorage.core.build import build_component
from anchorage.core.data import collate_detection, to_coco_results

SIZE = (96, 128)  # H, W


def _write_coco(tmp_path) -> str:
    """5 images: gt+dets, gt only, dets only (no gt), nothing, crowd; category ids 4 and 9."""
    rng = np.random.default_rng(0)
    h, w = SIZE
    images, anns = [], []
    for i in range(5):
        name = f"im{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / name)
        images.append({"id": 10 + i, "file_name": name, "height": h, "width": w})
    boxes = {
        10: [[4, 4, 20, 30], [50, 10, 70, 60], [2, 60, 8, 8]],
        11: [[30, 20, 90, 70]],
        14: [[10, 10, 40, 40], [60, 40, 30, 30]],
    }
    for image_id, bxs in boxes.items():
        for j, (x, y, bw, bh) in enumerate(bxs):
            m = np.zeros((h, w), np.uint8)
            m[y : y + bh, x : x + bw] = 1
            m[y : y + bh // 2, x : x + bw // 3] = 0  # not a full box: segm differs from bbox
            poly = [
                x,
                y + bh // 2,
                x + bw // 3,
                y + bh // 2,
                x + bw // 3,
                y,
                x + bw,
                y,
                x + bw,
                y + bh,
                x,
                y + bh,
            ]
            crowd = int(image_id == 14 and j == 1)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": 4 if j % 2 else 9,
                    "bbox": [x, y, bw, bh],
                    "area": float(m.sum()),
                    "iscrowd": crowd,
                    "segmentation": [poly],
                }
            )
    cats = [{"id": 9, "name": "nine"}, {"id": 4, "name": "four"}]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return str(path)


def _predictions(dataset, seed: int = 1) -> list[dict[str, torch.Tensor]]:
    """Jittered gt, wrong labels and false positives; none for image 11 and 13."""
    g = torch.Generator().manual_seed(seed)
    outs = []
    for i in range(len(dataset)):
        _, t = dataset[i]
        if t["image_id"] in (11, 13):
            outs.append(
                {
                    "boxes": torch.zeros(0, 4),
                    "scores": torch.zeros(0),
                    "labels": torch.zeros(0, dtype=torch.int64),
                    "masks": torch.zeros(0, 1, *SIZE),
                }
            )
            continue
        gt = t["boxes"].as_subclass(torch.Tensor)
        fp = torch.tensor([[60.0, 5.0, 90.0, 35.0], [0.0, 0.0, 16.0, 16.0]])
        boxes = torch.cat([gt + torch.randn(gt.shape, generator=g) * 1.5, fp])
        boxes = boxes.clamp(min=torch.zeros(4), max=torch.tensor([127.0, 95.0, 127.0, 95.0]))
        k = len(boxes)
        labels = torch.cat([t["labels"], torch.tensor([1, 2])])
        labels[0] = 3 - labels[0]  # one wrong class
        scores = torch.rand(k, generator=g)
        masks = torch.zeros(k, 1, *SIZE)
        for j, (x1, y1, x2, y2) in enumerate(boxes.round().int().tolist()):
            masks[j, 0, y1:y2, x1:x2] = 0.9
        outs.append({"boxes": boxes, "scores": scores, "labels": labels, "masks": masks})
    return outs


def _direct(ann_file, dataset, outputs, iou_type) -> np.ndarray:
    results = []
    for i, out in enumerate(outputs):
        image_id = dataset.records[i].image_id
        for b, s, lab, m in zip(
            out["boxes"].tolist(), out["scores"].tolist(), out["labels"].tolist(), out["masks"]
        ):
            res = {
                "image_id": image_id,
                "category_id": dataset.label_to_category[lab],
                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                "score": s,
            }
            if iou_type == "segm":
                rle = mask_utils.encode(np.asfortranarray((m[0].numpy() > 0.5).astype(np.uint8)))
                res["segmentation"] = rle
            results.append(res)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann_file)
        e = COCOeval(gt, gt.loadRes(results), iouType=iou_type)
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e.stats


BACKENDS = [
    "pycocotools",
    pytest.param(
        "faster_coco_eval",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("faster_coco_eval") is None,
            reason="optional extra fast-eval (faster-coco-eval) not installed",
        ),
    ),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_parity_with_direct_cocoeval(tmp_path, iou_type, backend):
    ann_file = _write_coco(tmp_path)
    ds = build_component("dataset", {"type": "coco", "ann_file": ann_file, "masks": True})
    assert ds.class_names == ["four", "nine"]  # sorted by category id
    outputs = _predictions(ds)
    metric = build_component(
        "metric",
        {"type": f"coco_{iou_type}", "backend": backend},
        class_names=tuple(ds.class_names),
    )
    images, targets = collate_detection([ds[i] for i in range(len(ds))])
    metric.update(outputs[:2], targets[:2])  # two batches
    metric.update(outputs[2:], targets[2:])
    ours = metric.compute()
    expected = _direct(ann_file, ds, outputs, iou_type)
    assert len(ours) == 12
    got = np.array(
        [
            ours[f"{iou_type}/{n}"]
            for n in (
                "AP",
                "AP50",
                "AP75",
                "APs",
                "APm",
                "APl",
                "AR1",
                "AR10",
                "AR100",
                "ARs",
                "ARm",
                "ARl",
            )
        ]
    )
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert 0 < ours[f"{iou_type}/AP50"] < 1
    text = metric.summary()
    assert "four" in text and "nine" in text and "AP50" in text


def _synthetic(n: int, classes: int) -> tuple[list[dict], list[dict]]:
    g = torch.Generator().manual_seed(0)
    outputs, targets = [], []
    for i in range(n):
        k = int(torch.randint(0, 6, (1,), generator=g))
        xy = torch.rand(k, 2, generator=g) * 200
        gt = torch.cat([xy, xy + 4 + torch.rand(k, 2, generator=g) * 120], 1)
        d = 30
        src = gt[torch.randint(0, k, (d,), generator=g)] if k else torch.rand(d, 4) * 100
        boxes = src + torch.randn(d, 4, generator=g) * 8
        boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        outputs.append(
            {
                "boxes": boxes,
                "scores": torch.rand(d, generator=g),
                "labels": torch.randint(1, classes + 1, (d,), generator=g),
            }
        )
        targets.append(
            {
                "image_id": i,
                "boxes": gt,
                "labels": torch.randint(1, classes + 1, (k,), generator=g),
                "iscrowd": (torch.rand(k, generator=g) < 0.1).long(),
                "orig_size": (320, 320),
            }
        )
    return outputs, targets


@pytest.mark.skipif(
    importlib.util.find_spec("faster_coco_eval") is None,
    reason="optional extra fast-eval (faster-coco-eval) not installed",
)
def test_faster_coco_eval_backend_gives_pycocotools_numbers():
    outputs, targets = _synthetic(120, 4)
    results = []
    for backend in ("pycocotools", "faster_coco_eval"):
        metric = build_component(
            "metric", {"type": "coco_bbox", "backend": backend}, class_names=("a", "b", "c", "d")
        )
        metric.update(outputs, targets)
        results.append(metric.compute())
        assert "a" in metric.summary()
    slow, fast = results
    assert len(fast) == 12 and 0 < slow["bbox/AP50"] < 1
    for key, value in slow.items():
        assert fast[key] == pytest.approx(value, abs=1e-12), key


def test_faster_coco_eval_backend_missing_is_a_clear_error(monkeypatch):
    from anchorage.core.errors import AnchorageError

    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # import fails
    with pytest.raises(AnchorageError, match="needs the package faster-coco-eval"):
        build_component("metric", {"type": "coco_bbox", "backend": "faster_coco_eval"})


@pytest.mark.parametrize("backend", BACKENDS)
def test_perfect_and_empty_predictions(backend):
    metric = build_component(
        "metric", {"type": "coco_bbox", "backend": backend}, class_names=("a",)
    )
    box = torch.tensor([[10.0, 10.0, 50.0, 60.0]])
    tgt = {
        "image_id": 1,
        "boxes": box,
        "labels": torch.tensor([1]),
        "iscrowd": torch.tensor([0]),
        "area": torch.tensor([2000.0]),
        "orig_size": (80, 80),
    }
    empty_tgt = {
        **tgt,
        "image_id": 2,
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "iscrowd": torch.zeros(0),
        "area": torch.zeros(0),
    }
    perfect = {"boxes": box, "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
    fp = {"boxes": box, "scores": torch.tensor([0.5]), "labels": torch.tensor([1])}
    metric.update([perfect, fp], [tgt, empty_tgt])
    res = metric.compute()
    # the false positive on the image without gt ranks below the true positive: AP stays 1
    assert res["bbox/AP"] == pytest.approx(1.0) and res["bbox/AR100"] == pytest.approx(1.0)
    metric.reset()
    metric.update(
        [
            {
                "boxes": torch.zeros(0, 4),
                "scores": torch.zeros(0),
                "labels": torch.zeros(0, dtype=torch.int64),
            }
        ],
        [tgt],
    )
    assert metric.compute()["bbox/AP"] == 0.0
    metric.reset()
    assert metric.compute()["bbox/AP"] == -1.0


def test_to_coco_results_maps_labels_back_to_category_ids(tmp_path):
    ann_file = _write_coco(tmp_path)
    ds = build_component("dataset", {"type": "coco", "ann_file": ann_file})
    outputs = _predictions(ds)
    results = to_coco_results(outputs, ds.image_ids, ds.label_to_category)
    assert {r["category_id"] for r in results} == {4, 9}
    first = results[0]
    b = outputs[0]["boxes"][0].tolist()
    assert first["image_id"] == 10
    assert first["bbox"] == pytest.approx([b[0], b[1], b[2] - b[0], b[3] - b[1]])
    with contextlib.redirect_stdout(io.StringIO()):
        COCO(ann_file).loadRes(results)  # accepted by pycocotools
