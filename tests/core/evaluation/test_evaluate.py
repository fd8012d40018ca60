"""build_metrics, evaluate() over a loader, and the cross-rank reduction (two gloo ranks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from anchorage.core import Spec
from anchorage.core.data import build_dataloader, build_dataset
from anchorage.core.errors import SpecError
from anchorage.core.evaluation import build_metrics, evaluate
from anchorage.core.evaluation.export import DetectionCollector


class Oracle(nn.Module):
    """Returns the ground truth of each image (looked up by image content) as detections."""

    def __init__(self, dataset, drop_every: int = 0) -> None:
        super().__init__()
        self.layer = nn.Linear(1, 1)
        self.answers = {}
        for i in range(len(dataset)):
            image, t = dataset[i]
            keep = torch.ones(len(t["labels"]), dtype=torch.bool)
            if drop_every and i % drop_every == 0:
                keep[:] = False
            self.answers[round(float(image.sum()), 2)] = {
                "boxes": t["boxes"].as_subclass(torch.Tensor)[keep],
                "scores": torch.linspace(0.9, 0.5, int(keep.sum())),
                "labels": t["labels"][keep],
            }

    def forward(self, images, targets=None):
        assert not self.training
        return [self.answers[round(float(im.sum()), 2)] for im in images]


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("cache"))
    ds = {
        "type": "shapes",
        "split": "val",
        "num_images": 10,
        "image_size": [64, 64],
        "max_size": 40,
        "root": root,
    }
    return Spec.from_dict(
        {
            "data": {"val": {"dataset": ds, "batch_size": 3}},
            "eval": {"metrics": [{"type": "coco_bbox"}, {"type": "voc_ap"}]},
        }
    )


def test_evaluate_with_oracle_gives_perfect_scores(spec):
    dataset = build_dataset(spec, "val")
    metrics = build_metrics(spec, dataset.class_names)
    assert metrics[0].class_names == ["rectangle", "ellipse", "triangle"]
    model = Oracle(dataset)
    model.train()
    res = evaluate(
        model, build_dataloader(spec, "val", dataset=dataset), metrics, "cpu", progress=False
    )
    assert model.training  # mode restored
    assert res["bbox/AP"] == pytest.approx(1.0) and res["voc/mAP"] == pytest.approx(1.0)
    assert len([k for k in res if k.startswith("bbox/")]) == 12
    assert "rectangle" in metrics[0].summary()


DDP_SCRIPT = """
import json, os, sys
import torch
import torch.distributed as dist
from anchorage.core import Spec
from anchorage.core.data import build_dataloader, build_dataset
from anchorage.core.evaluation import build_metrics, evaluate
from anchorage.core.evaluation.export import DetectionCollector
sys.path.insert(0, sys.argv[3])
from test_evaluate import Oracle

dist.init_process_group("gloo")
spec = Spec.from_dict(json.loads(sys.argv[1]))
dataset = build_dataset(spec, "val")
model = Oracle(dataset, drop_every=3)
loader = build_dataloader(spec, "val", dataset=dataset, distributed=True)
assert len(loader.sampler) == 5  # each rank sees its half
collector = DetectionCollector()
metrics = [*build_metrics(spec, dataset.class_names), collector]
res = evaluate(model, loader, metrics, "cpu", progress=False)
with open(f"{sys.argv[2]}.{dist.get_rank()}", "w") as f:
    json.dump({"numbers": res, "detections": collector.results()}, f)
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_two_ranks_reduce_metric_states_to_the_single_process_numbers(spec, tmp_path):
    """torchrun with 2 CPU ranks (gloo): every rank's numbers equal one pass over the data."""
    dataset = build_dataset(spec, "val")
    model = Oracle(dataset, drop_every=3)
    loader = build_dataloader(spec, "val", dataset=dataset)
    collector = DetectionCollector()
    metrics = [*build_metrics(spec, dataset.class_names), collector]
    single = evaluate(model, loader, metrics, "cpu", progress=False)
    assert 0 < single["bbox/AP"] < 1
    detections = json.loads(json.dumps(collector.results()))  # what a rank writes
    assert len({d["image_id"] for d in detections}) > 1
    script = tmp_path / "ddp_eval.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "res"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--standalone", str(script), json.dumps(spec.to_dict()), str(out),
         str(Path(__file__).parent)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in (0, 1):
        got = json.loads(Path(f"{out}.{rank}").read_text())
        assert got["numbers"] == pytest.approx(single)
        assert got["detections"] == detections  # the collector gathers every rank's images


def test_eval_section_errors():
    with pytest.raises(SpecError, match=r"eval\.split"):
        Spec.from_dict({"eval": {"split": "holdout"}})
    with pytest.raises(SpecError, match=r"eval\.metrics\[0\]\.type.*coco_bbox"):
        Spec.from_dict({"eval": {"metrics": [{"type": "coco_box"}]}})
    with pytest.raises(SpecError, match="set by its parent"):
        Spec.from_dict({"eval": {"metrics": [{"type": "coco_bbox", "class_names": ["a"]}]}})
