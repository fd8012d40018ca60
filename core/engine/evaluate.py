"""Evaluation and inference from a spec and a checkpoint (the library half of the tools).

``evaluate_checkpoint(spec, checkpoint)`` → metrics + printable tables (``tools/eval.py``);
``predict_images(spec, checkpoint, paths, out_dir)`` → PNGs with predictions drawn
(``tools/infer.py``); ``run_evaluation`` is the evaluation stage the trainer calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from ..build import build_model
from ..data import class_names_from_spec
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
    extra_metrics: Sequence[Any] = (),
) -> EvalResult:
    """Evaluate ``model`` on ``split`` with the spec's ``eval.metrics`` (and
    ``extra_metrics``, e.g. a ``DetectionCollector``, updated in the same pass).

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
) -> EvalResult:
    """Evaluate ``checkpoint`` on ``split`` (default ``eval.split``); write JSON to ``out``
    and, with ``detections``, every detection as a COCO results list (see
    ``core.evaluation.export``: category ids are the dataset's, boxes xywh original pixels)."""
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
    result = run_evaluation(spec, model, name, dev, progress=progress, extra_metrics=extra)
    if detections is not None:
        mapping = _label_to_category(result.loader.dataset)
        write_results(collector.results(mapping), detections)
    if out is not None:
        payload = {"checkpoint": str(checkpoint), "split": name, "metrics": result.metrics}
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return result


def _label_to_category(dataset: Any) -> dict[int, Any] | None:
    """The dataset's label → category id map (looking inside wrappers), or None."""
    while dataset is not None:
        mapping = getattr(dataset, "label_to_category", None)
        if mapping is not None:
            return dict(mapping)
        dataset = getattr(dataset, "dataset", None)
    return None


def read_image(path: str | Path) -> torch.Tensor:
    """An image file as float32 [3,H,W] in 0..1 (RGB; PIL decodes, as the datasets do)."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.v2.functional import pil_to_tensor

    try:
        with Image.open(path) as img:
            data = pil_to_tensor(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read image: {exc}") from None
    check_input_size(tuple(data.shape[-2:]), path)
    return data.float() / 255.0


MAX_INPUT_PIXELS = 100_000_000
MAX_ASPECT_RATIO = 1000


def check_input_size(size: tuple[int, int], path: str | Path) -> None:
    """DataError for an ``(H, W)`` no model input pipeline handles in bounded memory: more
    than ``MAX_INPUT_PIXELS`` pixels, or sides in a ratio beyond ``MAX_ASPECT_RATIO`` (a
    resize to a model's short side would make the long side absurd, or the short side 0)."""
    h, w = size
    ratio = max(h, w) / max(1, min(h, w))
    if h * w > MAX_INPUT_PIXELS or ratio > MAX_ASPECT_RATIO:
        raise DataError(
            f"{path}: image is {h}x{w} pixels (HxW); the limits are {MAX_INPUT_PIXELS} pixels "
            f"and a side ratio of {MAX_ASPECT_RATIO}:1 (got {ratio:.0f}:1): crop or resize it"
        )


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
    ground_truth: Mapping[str, Mapping[str, Any]] | None = None,
    notify: Callable[[Path, str], None] | None = None,
) -> list[Path]:
    """Run the model on each image (0..1, as read: models normalise inside) and write
    ``out_dir/<stem>.png`` with the prediction drawn (``draw_prediction``) and
    ``out_dir/<stem>.json`` with the raw prediction (``predictions_json``). Images whose
    short side is below ``min_size`` are drawn enlarged by an integer factor (0: never).
    ``ground_truth`` maps an image's file name to a target dict (``boxes`` xyxy, ``labels``)
    drawn beside the prediction; ``notify(png, text)`` hears when no detection passes
    ``score_thresh`` ("0 of 100 detections ≥ 0.30; best 0.16")."""
    from torchvision.transforms.v2.functional import to_pil_image

    from .pictures import nothing_passes, with_ground_truth

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
        target = (ground_truth or {}).get(Path(path).name)
        if target is not None:
            drawn = with_ground_truth(image, target, drawn, names, min_size)
        png = _unique(out / f"{Path(path).stem}.png", written)
        to_pil_image(drawn).save(png)
        info = predictions_json(output, path, image, names, score_thresh)
        png.with_suffix(".json").write_text(json.dumps(info) + "\n", encoding="utf-8")
        written.append(png)
        note = nothing_passes(output, score_thresh)
        if note is not None and notify is not None:
            notify(png, note)
    return written


def predictions_json(
    output: Mapping[str, Any],
    path: str | Path,
    image: torch.Tensor,
    class_names: Sequence[str],
    score_thresh: float,
) -> dict[str, Any]:
    """One image's raw prediction as plain data: ``{"image", "width", "height",
    "score_thresh", "detections": [{"bbox" xywh pixels, "score", "label", "class",
    "segmentation" RLE when masks}]}`` (every detection, also those under the threshold);
    semantic segmentation: ``{"classes": {name: pixel fraction}}`` instead of detections."""
    from ..evaluation.export import coco_results

    info: dict[str, Any] = {
        "image": str(path),
        "width": int(image.shape[-1]),
        "height": int(image.shape[-2]),
        "score_thresh": score_thresh,
    }
    if "boxes" not in output:
        logits = output["sem_seg"].detach().float().cpu()
        pred = logits.reshape(logits.shape[-3], -1).argmax(0)
        counts = torch.bincount(pred, minlength=logits.shape[-3]).double() / max(len(pred), 1)
        info["classes"] = {
            (class_names[c - 1] if c <= len(class_names) else str(c)): float(counts[c])
            for c in range(1, logits.shape[-3])
            if counts[c] > 0
        }
        return info
    detections = coco_results(output, 0)
    for det in detections:
        det.pop("image_id")
        label = det.pop("category_id")
        det["label"] = label
        det["class"] = class_names[label - 1] if 1 <= label <= len(class_names) else str(label)
    info["detections"] = detections
    return info


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
