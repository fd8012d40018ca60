"""Evaluation and inference from a spec and a checkpoint (the library half of the tools).

``evaluate_checkpoint(spec, checkpoint)`` → metrics + printable tables (``tools/eval.py``);
``load_model`` builds a spec's model with a checkpoint's weights (also for ``predict``, the
inference half); ``run_evaluation`` is the evaluation stage the trainer calls.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from ..atomic import write_text_atomically
from ..build import build_model
from ..errors import SpecError
from ..spec import Spec
from . import distributed as ddp
from .device import select_device


@attrs.frozen
class EvalResult:
    """Metrics (``dict[str, float]``, e.g. ``bbox/AP``), per-metric summary tables (rank 0),
    the loader and class names used (for drawing a few predictions) and the pictures the
    metrics drew (rank 0, with ``pictures``; e.g. a confusion matrix)."""

    metrics: dict[str, float]
    summaries: list[str]
    loader: Any
    class_names: list[str]
    pictures: list[Path] = attrs.Factory(list)


def eval_split(spec: Spec, split: str | None = None) -> str | None:
    """The split to evaluate: ``split``, else ``eval.split``; None when the spec has no eval
    section or the data section lacks that split."""
    section = spec.get("eval")
    if section is None:
        return None
    name = split or getattr(section, "split", "val")
    data = spec.get("data")
    if data is None or getattr(data, name, None) is None:
        return None
    return name


def run_evaluation(
    spec: Spec,
    model: nn.Module,
    split: str,
    device: torch.device,
    *,
    distributed: bool = False,
    progress: bool = True,
    loader: Any = None,
    extra_metrics: Sequence[Any] = (),
    pictures: str | Path | None = None,
) -> EvalResult:
    """Evaluate ``model`` on ``split`` with the spec's ``eval.metrics`` (and
    ``extra_metrics``, e.g. a ``DetectionCollector``, updated in the same pass); with
    ``pictures`` (a folder) rank 0 writes each metric's pictures there (``write_pictures``).

    Under torch.distributed every rank evaluates its shard; the metrics reduce their states
    over ranks when they compute, and every rank gets the same dict.
    """
    from ..data import build_dataloader
    from ..evaluation import build_metrics, evaluate

    if loader is None:
        loader = build_dataloader(spec, split, distributed=distributed)
    class_names = list(getattr(loader.dataset, "class_names", []))
    metrics = [*build_metrics(spec, class_names), *extra_metrics]
    model.eval()
    values = evaluate(model, loader, metrics, device, progress=progress)
    info = ddp.current()
    summaries = [m.summary() for m in metrics] if info.is_main else []
    drawn: list[Path] = []
    if pictures is not None and info.is_main:
        for m in metrics:
            drawn.extend(getattr(m, "write_pictures", lambda _folder: [])(pictures))
    values = {k: float(v) for k, v in values.items()}
    return EvalResult(values, summaries, loader, class_names, drawn)


@torch.no_grad()
def log_prediction_images(
    logger: Any,
    model: nn.Module,
    result: EvalResult,
    count: int,
    iteration: int,
    *,
    save: bool = False,
) -> None:
    """Draw the predictions on the first ``count`` images of the evaluation loader, beside
    their ground truth (to TensorBoard; with ``save`` also as PNG files in the work dir)."""
    device = next(model.parameters()).device
    model.eval()
    images: list[torch.Tensor] = []
    targets: list[dict] = []
    for batch, batch_targets in result.loader:
        targets.extend(batch_targets[: count - len(images)])
        images.extend(batch[: count - len(images)])
        if len(images) >= count:
            break
    if not images:
        return
    outputs = model([i.to(device) for i in images])
    logger.images(
        "predictions", images, outputs, result.class_names, iteration, save=save, targets=targets
    )


def load_model(spec: Spec, checkpoint: str | Path, device: torch.device) -> nn.Module:
    """Build the spec's model, load ``checkpoint`` (strict, weights-only), eval mode.

    A checkpoint whose stored spec describes another model (type, backbone, classes) is
    refused in one sentence naming both before any key is compared."""
    from ..checkpoint import check_state_fits, model_state, read_checkpoint
    from .finetune import check_spec_matches

    model = build_model(spec)
    data = read_checkpoint(checkpoint)
    check_spec_matches(data, spec.to_dict(), checkpoint)
    state = model_state(data)
    check_state_fits(model, state, str(checkpoint))
    model.load_state_dict(state)
    return model.to(device).eval()


def evaluate_checkpoint(
    spec: Spec,
    checkpoint: str | Path,
    *,
    split: str | None = None,
    device: str | None = None,
    progress: bool = True,
    out: str | Path | None = None,
    detections: str | Path | None = None,
    pictures: str | Path | None = None,
) -> EvalResult:
    """Evaluate ``checkpoint`` on ``split`` (default ``eval.split``); write JSON to ``out``,
    with ``detections`` every detection as a COCO results list (see
    ``core.evaluation.export``: category ids are the dataset's, boxes xywh original pixels),
    and with ``pictures`` the metrics' pictures (a confusion matrix) into that folder."""
    name = eval_split(spec, split)
    if name is None:
        raise SpecError(
            f"{spec.path or 'spec'}: evaluation needs an 'eval' section and data.{split or 'val'}"
        )
    dev = select_device(device)
    model = load_model(spec, checkpoint, dev)
    from ..evaluation.export import DetectionCollector, write_results

    collector = DetectionCollector()
    extra = [collector] if detections is not None else []
    result = run_evaluation(
        spec, model, name, dev, progress=progress, extra_metrics=extra, pictures=pictures
    )
    if detections is not None:
        mapping = _label_to_category(result.loader.dataset)
        write_results(collector.results(mapping), detections)
    if out is not None:
        payload = {"checkpoint": str(checkpoint), "split": name, "metrics": result.metrics}
        write_text_atomically(out, json.dumps(payload, indent=2) + "\n")
    return result


def _label_to_category(dataset: Any) -> dict[int, Any] | None:
    """The dataset's label → category id map (looking inside wrappers), or None."""
    while dataset is not None:
        mapping = getattr(dataset, "label_to_category", None)
        if mapping is not None:
            return dict(mapping)
        dataset = getattr(dataset, "dataset", None)
    return None


__all__ = [
    "EvalResult",
    "evaluate_checkpoint",
    "run_evaluation",
]
