"""Building metrics from a spec and running a model over a loader to compute them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def to_cpu(value: Any) -> Any:
    """``value`` with every tensor (in dicts, lists, tuples) moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def evaluate(
    model: nn.Module,
    loader: Any,
    metrics: Sequence[Metric],
    device: torch.device | str,
    *,
    progress: bool = True,
) -> dict[str, float]:
    """Run ``model`` in eval mode over ``loader`` and return every metric's numbers.

    ``loader`` yields ``(images: list[Tensor[3,H,W]], targets: list[dict])``. Under
    torch.distributed each rank evaluates its shard; metric states are gathered, rank 0
    computes and broadcasts, so every rank returns the same dict. The model's train/eval
    mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    for m in metrics:
        m.reset()
    rank0 = not _distributed() or dist.get_rank() == 0
    try:
        with torch.inference_mode():
            for images, targets in tqdm(loader, desc="eval", disable=not (progress and rank0)):
                if not images:
                    continue
                outputs = to_cpu(model([im.to(device) for im in images]))
                targets = to_cpu(targets)
                for m in metrics:
                    m.update(outputs, targets)
    finally:
        model.train(was_training)
    return _gather_and_compute(metrics)


def _gather_and_compute(metrics: Sequence[Metric]) -> dict[str, float]:
    if not _distributed():
        results: dict[str, float] = {}
        for m in metrics:
            results.update(m.compute())
        return results
    world = dist.get_world_size()
    for m in metrics:
        states: list[Any] = [None] * world
        dist.all_gather_object(states, m.state())
        if dist.get_rank() == 0:
            m.merge(states)
    box: list[Any] = [None]
    if dist.get_rank() == 0:
        box[0] = {k: v for m in metrics for k, v in m.compute().items()}
    dist.broadcast_object_list(box, src=0)
    return box[0]
