"""COCO-format output: a validated dataset as annotations, model outputs as results."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .dataset import DetectionDataset


def dataset_to_coco(dataset: DetectionDataset, image_root: str | Path) -> dict[str, Any]:
    """COCO dict (images, annotations, categories) of ``dataset``'s validated records.

    ``file_name`` is each image path relative to ``image_root``; category ids are
    ``dataset.label_to_category`` (names from ``class_names``); boxes become ``[x, y, w, h]``;
    ``iscrowd`` and ``area`` are copied; segmentations are kept when the records have them.
    Image ids are the dataset's, so results on either form evaluate the same.
    """
    root = Path(image_root)
    images, annotations = [], []
    for r in dataset.records:
        images.append(
            {
                "id": r.image_id,
                "file_name": Path(os.path.relpath(r.file, root)).as_posix(),
                "height": r.height,
                "width": r.width,
            }
        )
        for box, label, crowd, area, segm in zip(
            r.boxes.tolist(),
            r.labels.tolist(),
            r.iscrowd.tolist(),
            r.area.tolist(),
            r.segmentations,
        ):
            ann = {
                "id": len(annotations) + 1,
                "image_id": r.image_id,
                "category_id": dataset.label_to_category[label],
                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                "area": area,
                "iscrowd": crowd,
            }
            if segm:
                ann["segmentation"] = segm
            annotations.append(ann)
    categories = [
        {"id": dataset.label_to_category[i + 1], "name": name}
        for i, name in enumerate(dataset.class_names)
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


def to_coco_results(
    outputs: Sequence[dict[str, Any]],
    image_ids: Sequence[int],
    label_to_category: Mapping[int, Any],
) -> list[dict[str, Any]]:
    """Detections in COCO results format (``loadRes`` / the official evaluation server).

    outputs: per-image dicts with ``boxes`` [K,4] xyxy pixels, ``scores`` [K], ``labels`` [K]
    (1..C); labels map back to the annotation file's category ids through
    ``label_to_category`` (``dataset.label_to_category``). Boxes become ``[x, y, w, h]``.
    """
    results = []
    for out, image_id in zip(outputs, image_ids):
        boxes = out["boxes"].detach().cpu().double().reshape(-1, 4)
        boxes[:, 2:] -= boxes[:, :2]
        for box, score, label in zip(
            boxes.tolist(), out["scores"].tolist(), out["labels"].tolist()
        ):
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": label_to_category[int(label)],
                    "bbox": box,
                    "score": float(score),
                }
            )
    return results
