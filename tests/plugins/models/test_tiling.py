"""Overlapping-tile inference: every pixel covered, logits averaged where tiles overlap."""

from __future__ import annotations

import pytest
import torch

from anchorage.plugins.models.tiling import sliding_window, tile_starts, tile_windows


@pytest.mark.parametrize(
    ("length", "tile", "stride", "expected"),
    [(10, 6, 4, [0, 4]), (12, 4, 4, [0, 4, 8]), (13, 4, 3, [0, 3, 6, 9]), (5, 8, 2, [0])],
)
def test_tile_starts(length: int, tile: int, stride: int, expected: list[int]) -> None:
    starts = tile_starts(length, tile, stride)
    assert starts == expected
    covered = torch.zeros(length, dtype=torch.bool)
    for s in starts:
        covered[s : s + tile] = True
    assert covered.all()


def _local_ramp(crops: torch.Tensor) -> torch.Tensor:
    """Output = input + the row index inside the tile (depends on where the tile starts)."""
    rows = torch.arange(crops.shape[-2], dtype=crops.dtype).view(1, 1, -1, 1)
    return crops + rows


def test_sliding_window_averages_overlaps() -> None:
    images = torch.rand(2, 3, 10, 7)
    # rows: tiles start at 0 and 4 (tile 6, stride 4); rows 4-5 are covered twice:
    # local rows (4, 0) and (5, 1) -> means 2 and 3
    ramp = torch.tensor([0, 1, 2, 3, 2, 3, 2, 3, 4, 5], dtype=torch.float32).view(1, 1, 10, 1)
    out = sliding_window(_local_ramp, images, (6, 7), (4, 4), tiles_per_batch=1)
    torch.testing.assert_close(out, images + ramp)
    out2 = sliding_window(_local_ramp, images, (6, 7), (4, 4), tiles_per_batch=3)
    torch.testing.assert_close(out2, out)


def test_sliding_window_covers_every_pixel_with_tile_sized_crops() -> None:
    images = torch.rand(1, 3, 23, 31)
    seen = []

    def identity(crops: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(crops.shape[-2:]))
        return crops * 2

    out = sliding_window(identity, images, (8, 10), (5, 6))
    torch.testing.assert_close(out, images * 2)
    assert set(seen) == {(8, 10)}
    assert len(tile_windows((23, 31), (8, 10), (5, 6))) == 4 * 5  # rows 0,5,10,15; cols 0..18,21


def test_small_image_is_one_pass() -> None:
    images = torch.rand(2, 3, 5, 6)
    calls = []

    def fn(crops: torch.Tensor) -> torch.Tensor:
        calls.append(crops.shape)
        return crops[:, :1]

    out = sliding_window(fn, images, (8, 8), (4, 4))
    assert calls == [images.shape]
    torch.testing.assert_close(out, images[:, :1])
