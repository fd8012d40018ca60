"""per_image_top_n: per-image lists of ranked survivors, dropped entries, empty images."""

from __future__ import annotations

import torch

from anchorage.plugins.postprocess.batching import per_image_top_n


def test_per_image_top_n_keeps_rank_order_and_drops() -> None:
    image = torch.tensor([2, 0, 3, 2, 0, 2, 0, 0])  # 3 = dropped (b = 3); image 1 has none
    got = per_image_top_n(image, 3, 2)
    assert [g.tolist() for g in got] == [[1, 4], [], [0, 3]]
    assert all(g.dtype == torch.int64 for g in got)
    full = per_image_top_n(image, 3, 100)
    assert [g.tolist() for g in full] == [[1, 4, 6, 7], [], [0, 3, 5]]


def test_per_image_top_n_empty() -> None:
    got = per_image_top_n(torch.zeros(0, dtype=torch.int64), 2, 5)
    assert [g.numel() for g in got] == [0, 0]
