"""Conformance check for the ``metric`` kind (registered at the bottom). Every metric gets the
same outputs (one dict per image with every field a model may return) and reads what it needs.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

from ..evaluation.metric import Metric
from .kit import register_checks


def _batch(image_id: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One image: its target and an output carrying every field a model may return."""
    box = torch.tensor([[4.0, 4.0, 20.0, 24.0]])
    mask = torch.zeros(1, 32, 32, dtype=torch.uint8)
    mask[0, 4:24, 4:20] = 1
    target = {
        "image_id": image_id,
        "boxes": box,
        "labels": torch.tensor([1]),
        "iscrowd": torch.tensor([0]),
        "area": torch.tensor([320.0]),
        "orig_size": (32, 32),
        "masks": mask,
        "semantic_mask": mask[0].long(),
    }
    logits = torch.zeros(3, 32, 32)
    logits[1] = mask[0].float()
    output = {
        "boxes": box,
        "scores": torch.tensor([0.9]),
        "labels": torch.tensor([1]),
        "masks": mask[:, None].float(),
        "sem_seg": logits,
        "probs": torch.tensor([0.7, 0.2, 0.1]),  # classification: class 1 of 3
    }
    return [output], [target]


def check_metric(metric: Any) -> None:
    """A ``Metric`` (torchmetrics): update/compute/summary give finite floats; ``reset``
    forgets; two instances' states merged (what the cross-rank reduction does) equal one
    instance updated with both batches."""
    assert isinstance(metric, Metric), type(metric)
    batches = [_batch(image_id) for image_id in (1, 2)]
    metric.reset()
    for outputs, targets in batches:
        metric.update(outputs, targets)
    whole = metric.compute()
    assert whole and all(isinstance(v, float) and not math.isnan(v) for v in whole.values()), whole
    assert isinstance(metric.summary(), str)
    other = copy.deepcopy(metric)
    metric.reset()
    other.reset()
    metric.update(*batches[0])
    other.update(*batches[1])
    metric.merge_state(other)
    assert metric.compute() == whole


register_checks(kinds={"metric": check_metric})
