"""Cutting a batch's NMS survivors into per-image lists with one host synchronisation."""

from __future__ import annotations

import torch


def per_image_top_n(image: torch.Tensor, b: int, n: int) -> list[torch.Tensor]:
    """Positions of each image's first ``n`` entries: B int64 index tensors into ``image``.

    ``image`` ``[N]`` int64: the image of each entry, entries in rank order (NMS survivors best
    first); values ``>= b`` mark entries to drop. Each returned tensor keeps the rank order.
    One stable sort groups the entries by image; the per-image bounds come back to the host in
    one ``.tolist()`` (the lists' lengths are the final output's), then slices, no masks.
    """
    image, order = image.clamp(max=b).sort(stable=True)
    counts = torch.bincount(image, minlength=b + 1)[:b]
    starts = counts.cumsum(0) - counts
    bounds = torch.stack([starts, counts.clamp(max=n)]).tolist()
    return [order[start : start + k] for start, k in zip(*bounds)]
