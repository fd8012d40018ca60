"""Registered transforms.v2 wrappers keep boxes, masks, labels and areas aligned."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes
from torchvision.transforms.v2 import functional as F

from anchorage.core.build import build_component
from anchorage.core.data import Pipeline


def _sample(n: int = 4, size=(60, 80), seed: int = 0):
    """Rectangular instance masks with their exact boxes (xyxy, exclusive max)."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    masks = torch.zeros(n, h, w, dtype=torch.uint8)
    boxes = []
    for i in range(n):
        x1, y1 = (
            int(torch.randint(0, w - 20, (1,), generator=g)),
            int(torch.randint(0, h - 20, (1,), generator=g)),
        )
        x2, y2 = x1 + 8 + i * 3, y1 + 10 + i * 2
        masks[i, y1:y2, x1:x2] = 1
        boxes.append([x1, y1, x2, y2])
    target = {
        "boxes": tv_tensors.BoundingBoxes(
            torch.tensor(boxes, dtype=torch.float32), format="XYXY", canvas_size=size
        ),
        "labels": torch.arange(1, n + 1),
        "iscrowd": torch.zeros(n, dtype=torch.int64),
        "area": masks.flatten(1).sum(1).float(),
        "masks": tv_tensors.Mask(masks),
        "semantic_mask": tv_tensors.Mask(
            (masks * torch.arange(1, n + 1)[:, None, None]).amax(0).long()
        ),
        "image_id": 7,
        "orig_size": size,
    }
    image = tv_tensors.Image(torch.rand(3, h, w, generator=g))
    return image, target


def _pipeline(*specs):
    return Pipeline([build_component("transform", s) for s in specs])


def _check_aligned(image, t, tol: float = 0.0):
    n = len(t["labels"])
    assert t["boxes"].shape == (n, 4) and t["masks"].shape[0] == n
    assert t["iscrowd"].shape == (n,) and t["area"].shape == (n,)
    assert t["masks"].shape[-2:] == image.shape[-2:] == t["boxes"].canvas_size
    assert t["semantic_mask"].shape == image.shape[-2:]
    keep = t["masks"].flatten(1).sum(1) > 0
    from_masks = masks_to_boxes(t["masks"][keep]) + torch.tensor([0.0, 0.0, 1.0, 1.0])
    torch.testing.assert_close(
        t["boxes"].as_subclass(torch.Tensor)[keep], from_masks, atol=tol, rtol=0
    )
    assert t["image_id"] == 7 and t["orig_size"] == (60, 80)


@pytest.mark.parametrize(
    ("spec", "tol"),
    [
        ({"type": "horizontal_flip", "p": 1.0}, 0.0),
        ({"type": "vertical_flip", "p": 1.0}, 0.0),
        ({"type": "zoom_out", "p": 1.0, "side_range": [1.5, 2.5]}, 0.0),
        ({"type": "resize", "size": [90, 120]}, 1.5),
        ({"type": "random_resized_crop", "size": [64, 64], "scale": [0.5, 1.0]}, 2.0),
        ({"type": "iou_crop"}, 0.0),
    ],
)
def test_geometric_ops_keep_boxes_and_masks_aligned(spec, tol):
    torch.manual_seed(0)
    for seed in range(4):
        image, target = _sample(seed=seed)
        image, target = _pipeline(spec, {"type": "sanitize_boxes"})(image, target)
        _check_aligned(image, target, tol)
        # area follows the masks after a geometric op
        assert torch.equal(target["area"], target["masks"].flatten(1).sum(1).float())


def test_flip_matches_torchvision_functional():
    image, target = _sample()
    out_image, out = _pipeline({"type": "horizontal_flip", "p": 1.0})(image, dict(target))
    assert torch.equal(out_image, F.horizontal_flip(image))
    assert torch.equal(out["boxes"], F.horizontal_flip(target["boxes"]))


def test_sanitize_drops_boxes_with_their_labels_masks_area():
    image, target = _sample(n=3)
    boxes = target["boxes"].clone()
    boxes[1] = torch.tensor([10.0, 10.0, 10.5, 30.0])  # too thin
    target["boxes"] = tv_tensors.wrap(boxes, like=target["boxes"])
    _, out = _pipeline({"type": "sanitize"})(image, target)
    assert out["labels"].tolist() == [1, 3]
    assert out["masks"].shape[0] == out["area"].shape[0] == out["iscrowd"].shape[0] == 2
    assert torch.equal(out["masks"], target["masks"][[0, 2]])
    assert torch.equal(out["semantic_mask"], target["semantic_mask"])  # [H,W] passes through


@pytest.mark.parametrize("name", ["color_jitter", "photometric_distort"])
def test_photometric_ops_keep_geometry(name):
    torch.manual_seed(0)
    image, target = _sample()
    out_image, out = _pipeline({"type": name})(image, dict(target))
    assert out_image.shape == image.shape and out_image.dtype == torch.float32
    assert torch.equal(out["boxes"], target["boxes"]) and torch.equal(out["masks"], target["masks"])


def test_normalize_and_to_dtype():
    image, target = _sample()
    out, _ = _pipeline({"type": "normalize", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]})(
        image, dict(target)
    )
    torch.testing.assert_close(out, (image - 0.5) / 0.25)
    out, t = _pipeline({"type": "to_dtype", "dtype": "uint8"})(image, dict(target))
    assert out.dtype == torch.uint8 and t["masks"].dtype == torch.uint8
    assert t["boxes"].dtype == torch.float32
