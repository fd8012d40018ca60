"""Raw detections out: the COCO results list loads with pycocotools' loadRes, and COCOeval on
it gives the metric's own numbers (category ids mapped back, boxes xywh, masks as RLE)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from anchorage.core.build import build_component
from anchorage.core.data import collate_detection
from anchorage.core.evaluation.export import DetectionCollector, write_results

ROOT = Path(__file__).resolve().parents[3]


def _coco_metric_helpers():
    path = ROOT / "tests" / "plugins" / "metrics" / "test_coco_metrics.py"
    spec = importlib.util.spec_from_file_location("coco_metric_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_results_file_gives_the_metric_numbers(tmp_path: Path, iou_type: str) -> None:
    helpers = _coco_metric_helpers()
    ann_file = helpers._write_coco(tmp_path)  # category ids 9 and 4, not 1 and 2
    ds = build_component("dataset", {"type": "coco", "ann_file": ann_file, "masks": True})
    outputs = helpers._predictions(ds)
    _images, targets = collate_detection([ds[i] for i in range(len(ds))])
    metric = build_component("metric", {"type": f"coco_{iou_type}"}, class_names=("four", "nine"))
    collector = DetectionCollector()
    for m in (metric, collector):
        m.update(outputs[:3], targets[:3])
        m.update(outputs[3:], targets[3:])
    ours = metric.compute()
    assert collector.compute() == {}  # gathers (every rank's) detections, computes no number
    path = write_results(collector.results(ds.label_to_category), tmp_path / "dets.json")
    results = json.loads(path.read_text())
    assert {r["category_id"] for r in results} == {4, 9}
    assert all(("segmentation" in r) and isinstance(r["segmentation"]["counts"], str)
               for r in results)  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann_file)
        e = COCOeval(gt, gt.loadRes(str(path)), iouType=iou_type)
        e.evaluate()
        e.accumulate()
        e.summarize()
    assert e.stats[0] == pytest.approx(ours[f"{iou_type}/AP"], abs=1e-4)
    assert e.stats[1] == pytest.approx(ours[f"{iou_type}/AP50"], abs=1e-4)
    assert 0 < ours[f"{iou_type}/AP50"] < 1


def test_semantic_outputs_are_refused() -> None:
    import torch

    from anchorage.core.errors import AnchorageError

    with pytest.raises(AnchorageError, match="not detections"):
        DetectionCollector().update([{"sem_seg": torch.zeros(3, 4, 4)}], [{"image_id": 1}])
