"""build_metrics, evaluate() over a loader, and the cross-rank gather path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from anchorage.core import Spec
from anchorage.core.data import build_dataloader, build_dataset
from anchorage.core.errors import SpecError
from anchorage.core.evaluation import build_metrics, evaluate
from anchorage.core.evaluation import loop as evaluate_module


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


def test_gather_path_merges_rank_states(spec, monkeypatch):
    """Two fake ranks evaluate disjoint halves; rank 0's merged result equals one pass."""
    dataset = build_dataset(spec, "val")
    model = Oracle(dataset, drop_every=3)
    loader = build_dataloader(spec, "val", dataset=dataset)
    single = evaluate(
        model, loader, build_metrics(spec, dataset.class_names), "cpu", progress=False
    )
    assert 0 < single["bbox/AP"] < 1

    halves = [list(range(0, 10, 2)), list(range(1, 10, 2))]
    other_states = []
    other = build_metrics(spec, dataset.class_names)
    for m in other:
        for i in halves[1]:
            image, t = dataset[i]
            m.update(model.eval()([image]), [t])
        other_states.append(m.state())
    calls = iter(other_states)

    def all_gather_object(out, obj):
        out[0], out[1] = obj, next(calls)

    monkeypatch.setattr(evaluate_module, "_distributed", lambda: True)
    monkeypatch.setattr(evaluate_module.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(evaluate_module.dist, "get_rank", lambda: 0)
    monkeypatch.setattr(evaluate_module.dist, "all_gather_object", all_gather_object)
    monkeypatch.setattr(evaluate_module.dist, "broadcast_object_list", lambda box, src: None)
    shard = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, halves[0]),
        batch_size=2,
        collate_fn=lambda b: tuple(map(list, zip(*b))),
    )
    merged = evaluate(model, shard, build_metrics(spec, dataset.class_names), "cpu", progress=False)
    assert merged == pytest.approx(single)


def test_eval_section_errors():
    with pytest.raises(SpecError, match=r"eval\.split"):
        Spec.from_dict({"eval": {"split": "holdout"}})
    with pytest.raises(SpecError, match=r"eval\.metrics\[0\]\.type.*coco_bbox"):
        Spec.from_dict({"eval": {"metrics": [{"type": "coco_box"}]}})
    with pytest.raises(SpecError, match="set by its parent"):
        Spec.from_dict({"eval": {"metrics": [{"type": "coco_bbox", "class_names": ["a"]}]}})
