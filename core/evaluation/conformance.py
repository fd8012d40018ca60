"""Conformance check for the ``metric`` kind (see ``core/testing.py``).

``core/testing.py`` registers ``check_metric`` with ``conformance_check``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torchvision import tv_tensors


def _batch(image_id: int) -> tuple[Any, list[dict[str, Any]]]:
    box = torch.tensor([[4.0, 4.0, 20.0, 24.0]])
    mask = torch.zeros(1, 32, 32, dtype=torch.uint8)
    mask[0, 4:24, 4:20] = 1
    target = {
        "image_id": image_id,
        "boxes": tv_tensors.BoundingBoxes(box, format="XYXY", canvas_size=(32, 32)),
        "labels": torch.tensor([1]),
        "iscrowd": torch.tensor([0]),
        "area": torch.tensor([320.0]),
        "orig_size": (32, 32),
        "masks": tv_tensors.Mask(mask),
        "semantic_mask": tv_tensors.Mask(mask[0].long()),
    }
    logits = torch.zeros(1, 3, 32, 32)
    logits[0, 1] = mask[0].float()
    detections = [
        {
            "boxes": box,
            "scores": torch.tensor([0.9]),
            "labels": torch.tensor([1]),
            "masks": mask[:, None].float(),
            "out": logits,
        }
    ]
    return detections, [target]


def check_metric(metric: Any) -> None:
    """reset/update/compute/summary give finite floats; merging two ranks' states equals
    updating one metric with both batches."""
    outputs = []
    for image_id in (1, 2):
        dets, targets = _batch(image_id)
        outputs.append((dets[0]["out"] if _semantic(metric) else dets, targets))
    metric.reset()
    for out, targets in outputs:
        metric.update({"out": out} if _semantic(metric) else out, targets)
    whole = metric.compute()
    assert whole and all(isinstance(v, float) and not math.isnan(v) for v in whole.values()), whole
    assert isinstance(metric.summary(), str)
    states = []
    for out, targets in outputs:
        metric.reset()
        metric.update({"out": out} if _semantic(metric) else out, targets)
        states.append(metric.state())
    metric.merge(states)
    assert metric.compute() == whole


def _semantic(metric: Any) -> bool:
    return getattr(metric, "task", "detection") == "semantic"
