"""Conformance checks for the ``dataset`` and ``transform`` kinds.

Registered at the bottom, so ``check_entry("dataset", name)`` checks the sample contract of
every registered dataset and ``check_entry("transform", name)`` that a transform keeps a
target consistent.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors

from .kit import register_checks


def check_sample(sample: Any, num_classes: int) -> None:
    """One ``(image, target)`` honours the dataset contract (``core/data/dataset.py``); a
    classification target (``label``, no ``boxes``) that of ``image_folder``."""
    image, t = sample
    assert isinstance(image, torch.Tensor) and image.dtype == torch.float32, type(image)
    assert image.ndim == 3 and image.shape[0] == 3, tuple(image.shape)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0, "image values not in 0..1"
    h, w = image.shape[-2:]
    if "label" in t and "boxes" not in t:
        label = t["label"]
        assert isinstance(label, torch.Tensor) and label.dtype == torch.int64, type(label)
        assert label.shape == () and 1 <= int(label) <= num_classes, label
        assert isinstance(t["image_id"], int) and len(t["orig_size"]) == 2
        return
    boxes = t["boxes"]
    n = boxes.shape[0]
    assert isinstance(boxes, tv_tensors.BoundingBoxes) and boxes.dtype == torch.float32
    assert boxes.format == tv_tensors.BoundingBoxFormat.XYXY and boxes.shape == (n, 4)
    assert tuple(boxes.canvas_size) == (h, w), (boxes.canvas_size, (h, w))
    assert (boxes[:, 2:] > boxes[:, :2]).all(), "degenerate box in a sample"
    assert t["labels"].dtype == torch.int64 and t["labels"].shape == (n,)
    assert ((t["labels"] >= 1) & (t["labels"] <= num_classes)).all(), t["labels"]
    assert t["iscrowd"].dtype == torch.int64 and t["iscrowd"].shape == (n,)
    assert t["area"].dtype == torch.float32 and t["area"].shape == (n,)
    assert isinstance(t["image_id"], int) and len(t["orig_size"]) == 2
    if "masks" in t:
        assert isinstance(t["masks"], tv_tensors.Mask) and t["masks"].dtype == torch.uint8
        assert t["masks"].shape == (n, h, w), tuple(t["masks"].shape)
    if "semantic_mask" in t:
        sem = t["semantic_mask"]
        assert sem.dtype == torch.int64 and sem.shape == (h, w)
        ok = ((sem >= 0) & (sem <= num_classes)) | (sem == 255)
        assert ok.all(), "semantic_mask values outside 0..C and 255"


def check_dataset(dataset: Any) -> None:
    """``class_names`` is a list of str; the first samples honour the sample contract."""
    names = dataset.class_names
    assert isinstance(names, list) and names and all(isinstance(c, str) for c in names)
    assert len(dataset) > 0
    for i in range(min(len(dataset), 3)):
        check_sample(dataset[i], len(names))


def _toy_sample() -> tuple[tv_tensors.Image, dict[str, Any]]:
    masks = torch.zeros(2, 40, 48, dtype=torch.uint8)
    masks[0, 5:20, 4:30] = 1
    masks[1, 22:38, 30:46] = 1
    target = {
        "boxes": tv_tensors.BoundingBoxes(
            torch.tensor([[4.0, 5.0, 30.0, 20.0], [30.0, 22.0, 46.0, 38.0]]),
            format="XYXY",
            canvas_size=(40, 48),
        ),
        "labels": torch.tensor([1, 2]),
        "iscrowd": torch.zeros(2, dtype=torch.int64),
        "area": masks.flatten(1).sum(1).float(),
        "masks": tv_tensors.Mask(masks),
        "image_id": 1,
        "orig_size": (40, 48),
    }
    return tv_tensors.Image(
        torch.rand(3, 40, 48, generator=torch.Generator().manual_seed(0))
    ), target


def check_transform(transform: Any) -> None:
    """Applied to (image, target): boxes, labels, iscrowd, area and masks stay aligned with
    each other and with the image size; ``image_id`` and ``orig_size`` pass through."""
    torch.manual_seed(0)
    image, t = transform(*_toy_sample())
    n = t["boxes"].shape[0]
    assert image.ndim == 3 and image.shape[0] == 3
    assert tuple(t["boxes"].canvas_size) == tuple(image.shape[-2:])
    assert t["labels"].shape == t["iscrowd"].shape == t["area"].shape == (n,)
    assert t["masks"].shape == (n, *image.shape[-2:])
    assert t["image_id"] == 1 and t["orig_size"] == (40, 48)


register_checks(kinds={"dataset": check_dataset, "transform": check_transform})
