"""yolo_anchors: shapes per level centred on every grid cell, level/row/column/shape order."""

import pytest
import torch

from anchorage.core import build_component
from anchorage.core.errors import SpecError


def test_shapes_sit_on_cell_centres_in_head_order():
    gen = build_component(
        "anchor_generator", {"type": "yolo_anchors", "shapes": [[[8, 4], [4, 8]], [[20, 30]]]}
    )
    assert gen.num_anchors_per_location() == [2, 1]
    levels = gen((32, 64), [(4, 8), (2, 4)], per_level=True)
    assert [lv.shape for lv in levels] == [(4 * 8 * 2, 4), (2 * 4, 4)]
    # level 0, stride 8: row 1, column 2 → centre (20, 12); second shape 4x8
    box = levels[0][(1 * 8 + 2) * 2 + 1]
    assert torch.equal(box, torch.tensor([18.0, 8.0, 22.0, 16.0]))
    # level 1, stride 16: last cell centre (56, 24)
    assert torch.equal(levels[1][-1], torch.tensor([46.0, 9.0, 66.0, 39.0]))
    assert torch.equal(gen((32, 64), [(4, 8), (2, 4)]), torch.cat(levels))
    with pytest.raises(ValueError, match="2 levels"):
        gen((32, 64), [(4, 8)])


def test_bad_shapes_are_spec_errors():
    with pytest.raises(SpecError, match=r"shapes.*\[w, h\] > 0"):
        build_component("anchor_generator", {"type": "yolo_anchors", "shapes": [[[8, 0]]]})
