"""Batching detection samples: a list-of-tensors collate and a padded-target form.

``collate_detection`` keeps images of different sizes as a list (torchvision style); the
model's preprocessor resizes and pads them. tv_tensors (``Image``, ``BoundingBoxes``,
``Mask``), which the transform pipeline needs, end here: models, losses and metrics get plain
tensors. ``pad_targets`` turns the per-image target dicts
into padded tensors so that matching, encoding and losses run on the whole batch at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence


def collate_detection(
    batch: Sequence[tuple[torch.Tensor, dict[str, Any]] | None],
) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """Collate ``(image, target)`` samples into ``(images, targets)`` lists.

    images: list of ``[3,H,W]`` tensors (sizes may differ); targets: list of dicts as the
    dataset returns them, with every ``tv_tensors`` value unwrapped to a plain ``torch.Tensor``
    (same storage; a box's ``canvas_size`` is the image's size). ``None`` samples (bad files
    skipped under ``max_bad_samples``) are dropped, so a batch can be shorter than the batch
    size, or empty (``([], [])``).
    """
    images: list[torch.Tensor] = []
    targets: list[dict[str, Any]] = []
    for sample in batch:
        if sample is None:
            continue
        image, target = sample
        images.append(_plain(image))
        targets.append({k: _plain(v) for k, v in target.items()})
    return images, targets


def _plain(value: Any) -> Any:
    return value.as_subclass(torch.Tensor) if isinstance(value, torch.Tensor) else value


def pad_targets(
    targets: Sequence[dict[str, Any]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad per-image ground truth to the largest count in the batch.

    targets: dicts with ``boxes`` [N_i,4] float xyxy, ``labels`` [N_i] int64 and optionally
    ``iscrowd`` [N_i] (nonzero = crowd).

    Returns ``boxes`` [B,G,4] float32 (zeros where padded), ``labels`` [B,G] int64 (-1 where
    padded; crowd boxes keep their label) and ``valid`` [B,G] bool, False for padding and for
    crowd boxes, which must never be matched. G = max N_i (0 when every image is empty).
    Tensors are on the device of the first target's boxes (CPU for an empty batch).
    """
    if len(targets) == 0:
        return (
            torch.zeros(0, 0, 4),
            torch.zeros(0, 0, dtype=torch.int64),
            torch.zeros(0, 0, dtype=torch.bool),
        )
    boxes = [t["boxes"].reshape(-1, 4).float() for t in targets]
    labels = [t["labels"].reshape(-1).long() for t in targets]
    valid = []
    for t, b in zip(targets, boxes):
        crowd = t.get("iscrowd")
        if crowd is None:
            valid.append(torch.ones(b.shape[0], dtype=torch.bool, device=b.device))
        else:
            valid.append(crowd.reshape(-1).to(b.device) == 0)
    padded_boxes = pad_sequence(boxes, batch_first=True, padding_value=0.0)
    padded_labels = pad_sequence(labels, batch_first=True, padding_value=-1)
    padded_valid = pad_sequence(valid, batch_first=True, padding_value=False)
    return padded_boxes, padded_labels, padded_valid
