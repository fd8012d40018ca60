"""Anchor shapes from data: k-means on box sizes ``(w, h)`` with ``1 − IoU`` as distance.

The IoU of two shapes is that of the boxes centred on one point (YOLOv2's "dimension
clusters"): ``min(w)·min(h) / (w₁h₁ + w₂h₂ − min(w)·min(h))``. ``kmeans_shapes`` is seeded
(``torch.Generator``), starts from k distinct boxes drawn at random, assigns each box to the
shape of highest IoU and moves each shape to the median of its boxes until nothing changes.
"""

from __future__ import annotations

import torch


def shape_iou(wh: torch.Tensor, shapes: torch.Tensor) -> torch.Tensor:
    """IoU of co-centred boxes: ``wh [N,2]`` vs ``shapes [K,2]`` (both ``w, h`` > 0) → ``[N,K]``."""
    inter = torch.minimum(wh[:, None, :], shapes[None, :, :]).prod(-1)
    union = wh.prod(-1)[:, None] + shapes.prod(-1)[None, :] - inter
    return inter / union


def mean_best_iou(wh: torch.Tensor, shapes: torch.Tensor) -> float:
    """Mean over boxes of the IoU with their best shape (the usual anchor-fit figure)."""
    return float(shape_iou(wh, shapes).max(dim=1).values.mean())


def kmeans_shapes(wh: torch.Tensor, k: int, *, seed: int = 0, max_iter: int = 300) -> torch.Tensor:
    """``k`` anchor shapes ``[k,2]`` (sorted by area, small first) for box sizes ``wh [N,2]``.

    Raises ``ValueError`` when there are fewer than ``k`` boxes or ``k < 1``.
    """
    wh = wh.float()
    if k < 1 or wh.shape[0] < k:
        raise ValueError(f"k-means needs 1 <= k <= number of boxes, got k={k} for {len(wh)} boxes")
    generator = torch.Generator().manual_seed(seed)
    distinct = torch.unique(wh, dim=0)
    pool = distinct if distinct.shape[0] >= k else wh
    shapes = pool[torch.randperm(pool.shape[0], generator=generator)[:k]].clone()
    assign = torch.full((wh.shape[0],), -1, dtype=torch.int64)
    for _ in range(max_iter):
        new = shape_iou(wh, shapes).argmax(dim=1)
        if torch.equal(new, assign):
            break
        assign = new
        for c in range(k):
            members = wh[assign == c]
            if members.shape[0]:
                shapes[c] = members.median(dim=0).values
    return shapes[shapes.prod(-1).argsort()]
