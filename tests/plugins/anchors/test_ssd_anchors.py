import pytest
import torch
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList

from anchorage.core import SpecError, build_component

SSD300 = {
    "type": "ssd_default_boxes",
    "aspect_ratios": [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
    "scales": [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
    "steps": [8, 16, 32, 64, 100, 300],
}
GRID = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]


def _d2l_multibox_prior(fh, fw, sizes, ratios):
    """d2l 14.4.1 multibox_prior, verbatim arithmetic (normalised coordinates)."""
    size_tensor, ratio_tensor = torch.tensor(sizes), torch.tensor(ratios)
    bpp = len(sizes) + len(ratios) - 1
    center_h = (torch.arange(fh) + 0.5) * (1.0 / fh)
    center_w = (torch.arange(fw) + 0.5) * (1.0 / fw)
    shift_y, shift_x = torch.meshgrid(center_h, center_w, indexing="ij")
    shift_y, shift_x = shift_y.reshape(-1), shift_x.reshape(-1)
    w = torch.cat(
        (size_tensor * torch.sqrt(ratio_tensor[0]), sizes[0] * torch.sqrt(ratio_tensor[1:]))
    )
    w = w * fh / fw
    h = torch.cat(
        (size_tensor / torch.sqrt(ratio_tensor[0]), sizes[0] / torch.sqrt(ratio_tensor[1:]))
    )
    manip = torch.stack((-w, -h, w, h)).T.repeat(fh * fw, 1) / 2
    grid = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=1).repeat_interleave(bpp, dim=0)
    return grid + manip


def test_ssd300_boxes_equal_torchvision():
    ours = build_component("anchor_generator", SSD300)
    ref = DefaultBoxGenerator(
        SSD300["aspect_ratios"], scales=SSD300["scales"], steps=SSD300["steps"]
    )
    maps = [torch.empty(2, 1, h, w) for h, w in GRID]
    expected = ref(ImageList(torch.empty(2, 3, 300, 300), [(300, 300)] * 2), maps)[0]
    anchors = ours((300, 300), GRID)
    assert anchors.shape == (8732, 4)
    assert torch.equal(anchors, expected)
    assert ours.num_anchors_per_location() == [4, 6, 6, 6, 4, 4]
    levels = ours((300, 300), GRID, per_level=True)
    assert [len(x) for x in levels] == [5776, 2166, 600, 150, 36, 4]


def test_ssd_scales_from_ratios_and_level_mismatch():
    gen = build_component(
        "anchor_generator",
        {"type": "ssd_default_boxes", "aspect_ratios": [[2], [2]], "min_ratio": 0.2},
    )
    anchors = gen((64, 64), [(4, 4), (2, 2)])
    # level 0, first box: scale 0.2 of 64 px, centred on the first cell (8, 8)
    torch.testing.assert_close(anchors[0], torch.tensor([1.6, 1.6, 14.4, 14.4]))
    with pytest.raises(ValueError, match="2 levels"):
        gen((64, 64), [(4, 4)])
    with pytest.raises(SpecError, match="steps"):
        build_component("anchor_generator", {"type": "ssd_default_boxes", "steps": [8, 16]})


def test_multibox_prior_equals_d2l():
    sizes = [[0.2, 0.272], [0.37, 0.447]]
    gen = build_component("anchor_generator", {"type": "multibox_prior", "sizes": sizes})
    feature_sizes = [(4, 6), (2, 3)]
    levels = gen((40, 60), feature_sizes, per_level=True)
    assert gen.num_anchors_per_location() == [4, 4]
    scale = torch.tensor([60.0, 40.0, 60.0, 40.0])
    for level, (fh, fw), s in zip(levels, feature_sizes, sizes):
        torch.testing.assert_close(level, _d2l_multibox_prior(fh, fw, s, [1, 2, 0.5]) * scale)


def test_multibox_prior_validation():
    with pytest.raises(SpecError, match="ratios"):
        build_component(
            "anchor_generator",
            {"type": "multibox_prior", "sizes": [[0.2], [0.4], [0.6]], "ratios": [[1], [2]]},
        )
