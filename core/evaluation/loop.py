"""Building metrics from a spec and running a model over a loader to compute them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from .metric import Metric
from .section import EvalSection


def eval_section(spec: Any) -> EvalSection:
    """The validated ``eval`` section of a ``Spec`` (or the section itself)."""
    return spec if isinstance(spec, EvalSection) else spec.section("eval")


def build_metrics(spec: Any, class_names: Sequence[str]) -> list[Metric]:
    """Build the ``eval.metrics`` components, injecting ``class_names`` from the dataset."""
    names = tuple(str(n) for n in class_names)
    return [m.build(class_names=names) for m in eval_section(spec).metrics]


def evaluate(
    model: nn.Module,
    loader: Any,
    metrics: Sequence[Metric],
    device: torch.device | str,
    *,
    progress: bool = True,
) -> dict[str, float]:
    """Run ``model`` in eval mode over ``loader`` and return every metric's numbers.

    ``loader`` yields ``(images: list[Tensor[3,H,W]], targets: list[dict])``; the model returns
    one dict per image. Metrics are moved to ``device`` and updated there. Under
    torch.distributed each rank evaluates its shard and ``compute`` reduces the metric states
    over ranks (torchmetrics), so every rank returns the same dict. The model's train/eval mode
    is restored afterwards.
    """
    was_training = model.training
    model.eval()
    for m in metrics:
        m.reset()
        m.to(device)
    rank0 = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
    try:
        with torch.inference_mode():
            for images, targets in tqdm(loader, desc="eval", disable=not (progress and rank0)):
                if not images:
                    continue
                outputs = model([im.to(device) for im in images])
                for m in metrics:
                    m.update(outputs, targets)
    finally:
        model.train(was_training)
    results: dict[str, float] = {}
    for m in metrics:
        results.update(m.compute())
    return results
