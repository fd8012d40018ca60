"""Raw detections out: model outputs as a COCO results list (``loadRes`` / the COCO server).

``DetectionCollector`` is a metric that computes nothing: it keeps every image's detections
while ``evaluate`` runs (labels mapped to category ids when written), so ``tools/eval.py
--detections FILE.json`` writes exactly the outputs the metric tables were computed from.
``coco_results`` turns one image's output into COCO result dicts: ``image_id``,
``category_id`` (the dataset's own category id, through ``label_to_category``), ``bbox``
``[x, y, w, h]`` in original image pixels, ``score``, and ``segmentation`` (RLE with a
``counts`` string) when the model predicts instance masks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import AnchorageError
from .metric import Metric


def encode_rle(masks: torch.Tensor, threshold: float = 0.5) -> list[dict[str, Any]]:
    """Masks [K,1,H,W] or [K,H,W] (float probabilities or bool/uint8) → COCO RLE dicts
    (``{"size": [H, W], "counts": str}``) through ``pycocotools.mask.encode``."""
    from pycocotools import mask as mask_utils

    m = masks.detach().cpu()
    if m.dim() == 4:
        m = m[:, 0]
    binary = (m > threshold) if m.is_floating_point() else (m > 0)
    if len(binary) == 0:
        return []
    array = np.asfortranarray(binary.permute(1, 2, 0).numpy().astype(np.uint8))
    rles = mask_utils.encode(array)
    for r in rles:
        r["counts"] = r["counts"].decode("ascii")
    return list(rles)


def coco_results(
    output: Mapping[str, Any],
    image_id: int,
    label_to_category: Mapping[int, Any] | None = None,
    mask_threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """One image's detections (``boxes`` [K,4] xyxy original pixels, ``scores`` [K],
    ``labels`` [K] in 1..C, optional ``masks`` [K,1,H,W]) as COCO result dicts; labels map to
    category ids through ``label_to_category`` (identity when None)."""
    if "boxes" not in output:
        keys = sorted(output)
        raise AnchorageError(f"the model output has no detections (keys {keys}); not a detector")
    boxes = output["boxes"].detach().cpu().double().reshape(-1, 4)
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).tolist()
    scores = output["scores"].detach().cpu().double().reshape(-1).tolist()
    labels = output["labels"].detach().cpu().reshape(-1).tolist()
    masks = encode_rle(output["masks"], mask_threshold) if "masks" in output else None
    mapping = label_to_category or {}
    out = []
    for j, (box, score, label) in enumerate(zip(xywh, scores, labels)):
        res = {
            "image_id": int(image_id),
            "category_id": mapping.get(int(label), int(label)),
            "bbox": [round(v, 3) for v in box],
            "score": round(float(score), 5),
        }
        if masks is not None:
            res["segmentation"] = masks[j]
        out.append(res)
    return out


class DetectionCollector(Metric):
    """Keeps each image's detections as COCO results while ``evaluate`` runs (no numbers).

    ``results()`` lists them by image id; the first record of an image id wins, as in the
    COCO metrics.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every image."""
        self.images: dict[int, list[dict[str, Any]]] = {}

    def update(self, outputs: Any, targets: Sequence[dict[str, Any]]) -> None:
        """Record one batch of per-image detection dicts (semantic outputs are refused)."""
        for out, tgt in zip(outputs, targets):
            if "boxes" not in out:
                raise AnchorageError(
                    "--detections: the model predicts semantic maps ({'sem_seg': logits}), "
                    "not detections; COCO results need boxes"
                )
            image_id = int(tgt["image_id"])
            if image_id not in self.images:
                self.images[image_id] = coco_results(out, image_id)

    def compute(self) -> dict[str, float]:
        """No numbers: the collector only keeps the detections."""
        return {}

    def summary(self) -> str:
        """A one-line count."""
        n = sum(len(v) for v in self.images.values())
        return f"{n} detections on {len(self.images)} images"

    def state(self) -> dict[int, list[dict[str, Any]]]:
        """The kept results (plain data)."""
        return self.images

    def merge(self, states: Sequence[dict[int, list[dict[str, Any]]]]) -> None:
        """Union of every rank's images."""
        merged: dict[int, list[dict[str, Any]]] = {}
        for s in states:
            for k, v in s.items():
                merged.setdefault(k, v)
        self.images = merged

    def results(self, label_to_category: Mapping[int, Any] | None = None) -> list[dict[str, Any]]:
        """Every detection, images in id order; labels (kept as ``category_id`` while
        collecting) become the dataset's category ids through ``label_to_category``."""
        mapping = label_to_category or {}
        return [
            {**r, "category_id": mapping.get(r["category_id"], r["category_id"])}
            for _, rs in sorted(self.images.items())
            for r in rs
        ]


def write_results(results: list[dict[str, Any]], path: str | Path) -> Path:
    """Write a COCO results list as JSON (the folder is created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results), encoding="utf-8")
    tmp.replace(path)
    return path
