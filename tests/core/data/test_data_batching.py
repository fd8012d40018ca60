"""collate_detection and pad_targets."""

from __future__ import annotations

import torch
from torchvision import tv_tensors

from anchorage.core.data import collate_detection, pad_targets


def _target(n: int, crowd: tuple[int, ...] = ()) -> dict:
    boxes = torch.arange(n * 4, dtype=torch.float32).reshape(n, 4)
    iscrowd = torch.zeros(n, dtype=torch.int64)
    iscrowd[list(crowd)] = 1
    return {
        "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(50, 50)),
        "labels": torch.arange(1, n + 1),
        "iscrowd": iscrowd,
    }


def test_collate_keeps_sizes_and_drops_skipped_samples():
    a = (tv_tensors.Image(torch.zeros(3, 10, 12)), _target(1))
    b = (torch.zeros(3, 20, 8), {**_target(2), "image_id": 7})
    images, targets = collate_detection([a, None, b])
    assert [im.shape for im in images] == [(3, 10, 12), (3, 20, 8)]
    assert list(targets[1]) == list(b[1]) and targets[1]["image_id"] == 7
    assert torch.equal(targets[1]["boxes"], b[1]["boxes"])
    assert collate_detection([None]) == ([], [])


def test_collate_unwraps_tv_tensors_once_for_the_models():
    mask = tv_tensors.Mask(torch.zeros(5, 5, dtype=torch.int64))
    images, targets = collate_detection(
        [(tv_tensors.Image(torch.zeros(3, 5, 5)), {**_target(1), "semantic_mask": mask})]
    )
    assert type(images[0]) is torch.Tensor
    assert all(type(v) is torch.Tensor for v in targets[0].values())


def test_pad_targets_pads_with_minus_one_and_marks_crowd_invalid():
    boxes, labels, valid = pad_targets([_target(3, crowd=(1,)), _target(0), _target(1)])
    assert boxes.shape == (3, 3, 4) and boxes.dtype == torch.float32
    assert type(boxes) is torch.Tensor  # plain tensor, not BoundingBoxes
    assert labels.tolist() == [[1, 2, 3], [-1, -1, -1], [1, -1, -1]]
    assert valid.tolist() == [[True, False, True], [False] * 3, [True, False, False]]
    assert torch.equal(boxes[0], _target(3)["boxes"].as_subclass(torch.Tensor))
    assert (boxes[1] == 0).all() and (boxes[2, 1:] == 0).all()


def test_pad_targets_empty_images_and_batch():
    boxes, labels, valid = pad_targets([_target(0), _target(0)])
    assert boxes.shape == (2, 0, 4) and labels.shape == (2, 0) and valid.shape == (2, 0)
    boxes, labels, valid = pad_targets([])
    assert boxes.shape == (0, 0, 4) and labels.dtype == torch.int64 and valid.dtype == torch.bool


def test_pad_targets_without_iscrowd_all_valid():
    t = _target(2)
    del t["iscrowd"]
    _, _, valid = pad_targets([t])
    assert valid.all()
