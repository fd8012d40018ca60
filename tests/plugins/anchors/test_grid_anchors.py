"""grid_anchors equals torchvision's AnchorGenerator."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from anchorage.core.build import build_component
from anchorage.core.errors import SpecError


def test_same_as_torchvision() -> None:
    sizes, ratios = ((32,), (64,), (128, 160)), ((0.5, 1.0, 2.0),) * 3
    gen = build_component(
        "anchor_generator", {"type": "grid_anchors", "sizes": [[32], [64], [128, 160]]}
    )
    tv = AnchorGenerator(sizes, ratios)
    feats = [torch.zeros(2, 1, 25, 38), torch.zeros(2, 1, 13, 19), torch.zeros(2, 1, 7, 10)]
    images = ImageList(torch.zeros(2, 3, 200, 304), [(200, 300), (180, 304)])
    expected = tv(images, feats)[0]
    got = gen((200, 304), [tuple(f.shape[-2:]) for f in feats])
    assert torch.equal(got, expected)
    assert gen.num_anchors_per_location() == [3, 3, 6]


def test_ratio_count_checked() -> None:
    with pytest.raises(SpecError, match="aspect_ratios"):
        build_component(
            "anchor_generator",
            {"type": "grid_anchors", "sizes": [[32], [64], [128]], "aspect_ratios": [[1.0], [2.0]]},
        )
