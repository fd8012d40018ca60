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

import torch

from ..atomic import write_text_atomically
from ..errors import AnchorageError
from .metric import Metric
from .state import encode_rle, flat, pack_rles, table, unpack_rles


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

    State (``torchmetrics`` list states, concatenated across ranks): one float64 row
    ``(image_id, x, y, w, h, score, label)`` per detection, and the detections' mask RLEs
    packed as tensors (``state.pack_rles``). ``compute()`` gathers them; ``results()`` then
    lists them by image id. The first record of an image id wins, as in the COCO metrics.
    """

    def __init__(self) -> None:
        super().__init__()
        for name in ("rows", "rle", "rle_meta"):
            self.add_state(name, [], dist_reduce_fx="cat")
        self._seen: set[int] = set()
        self._results: list[dict[str, Any]] = []

    def reset(self) -> None:
        """Forget every image."""
        super().reset()
        self._seen = set()
        self._results = []

    def update(self, outputs: Any, targets: Sequence[dict[str, Any]]) -> None:
        """Record one batch of per-image detection dicts (semantic outputs are refused)."""
        for out, tgt in zip(outputs, targets):
            if "boxes" not in out:
                raise AnchorageError(
                    "--detections: the model predicts semantic maps ({'sem_seg': logits}), "
                    "not detections; COCO results need boxes"
                )
            image_id = int(tgt["image_id"])
            if image_id in self._seen:
                continue
            self._seen.add(image_id)
            found = coco_results(out, image_id)
            self.rows.append(
                torch.tensor(
                    [[r["image_id"], *r["bbox"], r["score"], r["category_id"]] for r in found],
                    dtype=torch.float64,
                    device=self.device,
                ).reshape(-1, 7)
            )
            if found and "segmentation" in found[0]:
                data, meta = pack_rles([r["segmentation"] for r in found])
                self.rle.append(data.to(self.device))
                self.rle_meta.append(meta.to(self.device))

    def compute(self) -> dict[str, float]:
        """No numbers: gathers every rank's detections for ``results()``."""
        rows = table(self.rows, 7)
        meta = table(self.rle_meta, 3)
        masks = unpack_rles(flat(self.rle), meta) if len(meta) else []
        # RLEs were packed in row order, for the images that had masks (all or none do).
        results = []
        for n, (image_id, x, y, w, h, score, label) in enumerate(rows.tolist()):
            res = {
                "image_id": int(image_id),
                "category_id": int(label),
                "bbox": [x, y, w, h],
                "score": score,
            }
            if masks:
                res["segmentation"] = masks[n]
            results.append(res)
        self._results = sorted(results, key=lambda r: r["image_id"])  # stable: row order kept
        return {}

    def summary(self) -> str:
        """A one-line count."""
        images = {r["image_id"] for r in self._results}
        return f"{len(self._results)} detections on {len(images)} images"

    def results(self, label_to_category: Mapping[int, Any] | None = None) -> list[dict[str, Any]]:
        """Every detection gathered by ``compute()``, images in id order; labels (kept as
        ``category_id`` while collecting) become the dataset's category ids through
        ``label_to_category``."""
        mapping = label_to_category or {}
        return [
            {**r, "category_id": mapping.get(r["category_id"], r["category_id"])}
            for r in self._results
        ]


def write_results(results: list[dict[str, Any]], path: str | Path) -> Path:
    """Write a COCO results list as JSON, atomically (the folder is created; a kill mid-write
    leaves no partial file at ``path``); returns the path."""
    return write_text_atomically(path, json.dumps(results))
