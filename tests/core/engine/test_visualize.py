"""Drawing one image's output: each field it has is a layer (semantic overlay, masks, boxes)."""

from __future__ import annotations

import pytest
import torch
from torchvision.utils import draw_bounding_boxes

from anchorage.core.engine import visualize
from anchorage.core.engine.visualize import draw_prediction


def test_detection_matches_torchvision_drawing_above_threshold() -> None:
    image = torch.zeros(3, 20, 30)
    output = {
        "boxes": torch.tensor([[2.0, 3.0, 12.0, 15.0], [0.0, 0.0, 5.0, 5.0]]),
        "scores": torch.tensor([0.9, 0.1]),
        "labels": torch.tensor([2, 1]),
    }
    got = draw_prediction(image, output, ["cat", "dog"], score_thresh=0.5)
    colour = visualize.palette(3)[2]
    expected = draw_bounding_boxes(
        torch.zeros(3, 20, 30, dtype=torch.uint8), output["boxes"][:1],
        labels=["dog 0.90"], colors=[colour], width=2, fill_labels=True, label_colors="black",
    )  # fmt: skip
    assert torch.equal(got, expected)


def test_semantic_overlay_colours_predicted_classes_only() -> None:
    image = torch.zeros(3, 8, 8)
    logits = torch.zeros(3, 8, 8)
    logits[2, :4] = 5.0  # top half: class 2; bottom half: background
    got = draw_prediction(image, {"sem_seg": logits}, ["a", "b"])
    assert got.dtype == torch.uint8 and got.shape == (3, 8, 8)
    assert (got[:, :4] != 0).any(dim=0).all() and (got[:, 4:] == 0).all()


def test_semantic_overlay_follows_an_enlarged_drawing() -> None:
    logits = torch.randn(3, 8, 8)
    got = draw_prediction(torch.zeros(3, 8, 8), {"sem_seg": logits}, ["a", "b"], min_size=16)
    assert got.shape == (3, 16, 16)


def test_an_output_with_nothing_to_draw_names_its_keys() -> None:
    with pytest.raises(TypeError, match="keypoints"):
        draw_prediction(torch.zeros(3, 4, 4), {"keypoints": 1}, [])


def test_fields_are_layers_semantic_under_boxes() -> None:
    logits = torch.zeros(3, 20, 30)
    logits[1] = 5.0  # every pixel class 1
    boxes = {
        "boxes": torch.tensor([[2.0, 3.0, 12.0, 15.0]]),
        "scores": torch.tensor([0.9]),
        "labels": torch.tensor([2]),
    }
    seg = draw_prediction(torch.zeros(3, 20, 30), {"sem_seg": logits}, ["a", "b"])
    both = draw_prediction(torch.zeros(3, 20, 30), {"sem_seg": logits, **boxes}, ["a", "b"])
    expected = draw_prediction(seg.float() / 255, boxes, ["a", "b"])
    assert torch.equal(both, expected)


def test_instance_masks_are_overlaid_with_their_boxes() -> None:
    masks = torch.zeros(2, 1, 40, 40)
    masks[0, 0, 5:10, 5:10] = 0.9
    masks[1, 0, 30:36, 30:36] = 0.9  # below the score threshold: not drawn
    output = {
        "boxes": torch.tensor([[4.0, 4.0, 11.0, 11.0], [29.0, 29.0, 37.0, 37.0]]),
        "scores": torch.tensor([0.8, 0.2]),
        "labels": torch.tensor([1, 2]),
        "masks": masks,
    }
    got = draw_prediction(torch.zeros(3, 40, 40), output, ["a", "b"], score_thresh=0.5)
    assert (got[:, 6:9, 6:9] != 0).any(dim=0).all()  # inside the kept mask
    assert (got[:, 28:38, 28:38] == 0).all()  # the low-score instance is absent


def test_small_images_are_enlarged_with_boxes_and_masks_scaled_alike() -> None:
    masks = torch.zeros(1, 1, 10, 20)
    masks[0, 0, 2:5, 3:8] = 0.9
    output = {
        "boxes": torch.tensor([[3.0, 2.0, 8.0, 5.0]]),
        "scores": torch.tensor([0.9]),
        "labels": torch.tensor([1]),
        "masks": masks,
    }
    small = draw_prediction(torch.zeros(3, 10, 20), output, ["a"], min_size=25)
    assert small.shape == (3, 30, 60)  # 25/10 rounds up to 3
    big = {**output, "boxes": output["boxes"] * 3}
    big["masks"] = masks.repeat_interleave(3, 2).repeat_interleave(3, 3)
    assert torch.equal(small, draw_prediction(torch.zeros(3, 30, 60), big, ["a"]))


def test_images_at_least_min_size_are_drawn_at_their_own_size() -> None:
    image = torch.rand(3, 40, 50)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}
    got = draw_prediction(image, empty, [], score_thresh=0.3, min_size=40)
    assert torch.equal(got, visualize.to_uint8(image))


def test_note_when_no_detection_passes_the_threshold() -> None:
    from anchorage.core.engine.pictures import nothing_passes

    output = {
        "boxes": torch.tensor([[2.0, 2.0, 8.0, 8.0]]).repeat(100, 1),
        "scores": torch.linspace(0.01, 0.16, 100),
        "labels": torch.ones(100, dtype=torch.int64),
    }
    assert nothing_passes(output, 0.3) == "0 of 100 detections \u2265 0.30; best 0.16"
    assert nothing_passes(output, 0.1) is None
    empty = {k: v[:0] for k, v in output.items()}
    assert nothing_passes(empty, 0.3) == "0 detections"
    image = torch.zeros(3, 40, 40)
    noted = draw_prediction(image, output, ["a"], 0.3)
    assert (noted[:, :15] != 0).any() and (noted[:, 16:] == 0).all()  # only the note band
    assert (draw_prediction(image, output, ["a"], 0.1)[:, 16:] != 0).any()  # boxes drawn
