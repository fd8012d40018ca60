"""Evaluation and inference from a spec and a checkpoint (the library half of the tools).

``evaluate_checkpoint(spec, checkpoint)`` → metrics + printable tables (``tools/eval.py``);
``predict_images(spec, checkpoint, paths, out_dir)`` → PNGs with predictions drawn
(``tools/infer.py``); ``run_evaluation`` is the evaluation stage the trainer calls.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from ..build import build_model
from ..checkpoint import load_checkpoint
from ..errors import DataError, SpecError
from ..spec import Spec
from . import distributed as ddp
from .device import select_device
from .visualize import LEGIBLE_SIZE, draw_prediction


@attrs.frozen
class EvalResult:
    """Metrics (``dict[str, float]``, e.g. ``bbox/AP``), per-metric summary tables (rank 0)
    and the loader and class names used (for drawing a few predictions)."""

    metrics: dict[str, float]
    summaries: list[str]
    loader: Any
    class_names: list[str]


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
) -> EvalResult:
    """Evaluate ``model`` on ``split`` with the spec's ``eval.metrics``.

    Under torch.distributed every rank evaluates its shard; the metrics reduce their states
    over ranks when they compute, and every rank gets the same dict.
    """
    from ..data import build_dataloader
    from ..evaluation import build_metrics, evaluate

    if loader is None:
        loader = build_dataloader(spec, split, distributed=distributed)
    class_names = list(getattr(loader.dataset, "class_names", []))
    metrics = build_metrics(spec, class_names)
    model.eval()
    values = evaluate(model, loader, metrics, device, progress=progress)
    info = ddp.current()
    summaries = [m.summary() for m in metrics] if info.is_main else []
    return EvalResult({k: float(v) for k, v in values.items()}, summaries, loader, class_names)


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
    """Draw the predictions on the first ``count`` images of the evaluation loader (to
    TensorBoard; with ``save`` also as PNG files in the work dir)."""
    device = next(model.parameters()).device
    model.eval()
    images: list[torch.Tensor] = []
    for batch, _targets in result.loader:
        images.extend(batch[: count - len(images)])
        if len(images) >= count:
            break
    if not images:
        return
    outputs = model([i.to(device) for i in images])
    logger.images("predictions", images, outputs, result.class_names, iteration, save=save)


def load_model(spec: Spec, checkpoint: str | Path, device: torch.device) -> nn.Module:
    """Build the spec's model, load ``checkpoint`` (strict, weights-only), eval mode."""
    model = build_model(spec)
    load_checkpoint(model, checkpoint)
    return model.to(device).eval()


def evaluate_checkpoint(
    spec: Spec,
    checkpoint: str | Path,
    *,
    split: str | None = None,
    device: str | None = None,
    progress: bool = True,
    out: str | Path | None = None,
) -> EvalResult:
    """Evaluate ``checkpoint`` on ``split`` (default ``eval.split``); write JSON to ``out``."""
    name = eval_split(spec, split)
    if name is None:
        raise SpecError(
            f"{spec.path or 'spec'}: evaluation needs an 'eval' section and data.{split or 'val'}"
        )
    dev = select_device(device)
    model = load_model(spec, checkpoint, dev)
    result = run_evaluation(spec, model, name, dev, progress=progress)
    if out is not None:
        payload = {"checkpoint": str(checkpoint), "split": name, "metrics": result.metrics}
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return result


def class_names_from_spec(spec: Spec) -> list[str]:
    """Class names of the spec's first available split (test, val, train)."""
    from ..data import build_dataset

    data = spec.get("data")
    for split in ("test", "val", "train"):
        if data is None or getattr(data, split, None) is None:
            continue
        try:
            dataset = build_dataset(spec, split, transforms=False)
        except (DataError, OSError) as exc:
            raise DataError(
                f"cannot read class names from data.{split} ({exc}); pass --classes"
            ) from None
        return list(getattr(dataset, "class_names", []))
    raise SpecError(f"{spec.path or 'spec'}: no data split to take class names from; use --classes")


def read_image(path: str | Path) -> torch.Tensor:
    """An image file as float32 [3,H,W] in 0..1 (RGB; PIL decodes, as the datasets do)."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.v2.functional import pil_to_tensor

    try:
        with Image.open(path) as img:
            data = pil_to_tensor(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read image: {exc}") from None
    return data.float() / 255.0


@torch.no_grad()
def predict_images(
    spec: Spec,
    checkpoint: str | Path,
    paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    score_thresh: float = 0.3,
    class_names: Sequence[str] | None = None,
    device: str | None = None,
    min_size: int = LEGIBLE_SIZE,
) -> list[Path]:
    """Run the model on each image (0..1, as read: models normalise inside) and write
    ``out_dir/<stem>.png`` with the prediction drawn (``draw_prediction``). Images whose short
    side is below ``min_size`` are drawn enlarged by an integer factor (0: never)."""
    from torchvision.transforms.v2.functional import to_pil_image

    dev = select_device(device)
    images = [read_image(p) for p in paths]  # fail on a bad file before loading the model
    names = list(class_names) if class_names else class_names_from_spec(spec)
    model = load_model(spec, checkpoint, dev)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for path, image in zip(paths, images):
        (output,) = model([image.to(dev)])
        drawn = draw_prediction(image, output, names, score_thresh, min_size)
        target = _unique(out / f"{Path(path).stem}.png", written)
        to_pil_image(drawn).save(target)
        written.append(target)
    return written


def _unique(path: Path, taken: list[Path]) -> Path:
    candidate, n = path, 1
    while candidate in taken:
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
        n += 1
    return candidate


__all__ = [
    "EvalResult",
    "evaluate_checkpoint",
    "predict_images",
    "run_evaluation",
]
