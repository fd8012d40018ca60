"""``box_regression_head``: it must see where the object is, not only what is in the map."""

from __future__ import annotations

import pytest
import torch

from anchorage.core.build import build_component


def box_head(**params):
    torch.manual_seed(0)
    head = build_component("head", {"type": "box_regression_head", **params}, in_channels=4)
    last = [m for m in head.mlp if isinstance(m, torch.nn.Linear)][-1]
    torch.nn.init.normal_(last.weight, std=1.0)  # a trained head: the zero start says nothing
    return head.eval()


def spot(row: int, col: int) -> torch.Tensor:
    """A 3x3 map, zero but for one hot cell: the same features at another place."""
    x = torch.zeros(1, 4, 3, 3)
    x[0, :, row, col] = 1.0
    return x


def test_the_box_depends_on_where_the_features_are() -> None:
    # a global pool (the head before the grid) gave the same box for both: the box could not
    # follow the object, and the localizer's mean IoU stalled
    head = box_head()
    with torch.no_grad():
        top_left, bottom_right = head(spot(0, 0))["boxes"], head(spot(2, 2))["boxes"]
    assert not torch.allclose(top_left, bottom_right, atol=1e-3)


def test_grid_none_is_the_global_pool_and_keeps_no_position() -> None:
    head = box_head(grid=None)
    with torch.no_grad():
        assert torch.allclose(head(spot(0, 0))["boxes"], head(spot(2, 2))["boxes"])


@pytest.mark.parametrize("size", [(1, 1), (2, 5), (7, 7)])
def test_any_map_size_gives_one_box_in_0_1(size: tuple[int, int]) -> None:
    head = box_head(grid=(3, 3), pool="avgmax")
    with torch.no_grad():
        boxes = head(torch.randn(2, 4, *size))["boxes"]
    assert boxes.shape == (2, 4) and ((boxes >= 0) & (boxes <= 1)).all()


def test_a_bad_grid_is_refused() -> None:
    with pytest.raises(Exception, match="grid"):
        build_component("head", {"type": "box_regression_head", "grid": [0, 3]}, in_channels=4)
