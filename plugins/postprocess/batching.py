"""Batch-wide postprocessing helpers: clipping to each image, NMS over groups, cutting the
survivors into per-image lists."""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms, nms


def image_bounds(image_sizes: list[tuple[int, int]], like: torch.Tensor) -> torch.Tensor:
    """``[B,4]`` ``(w, h, w, h)`` of each image's ``(h, w)``, on ``like``'s device and dtype.

    Built on the host and copied with ``non_blocking``: no stream synchronisation on a GPU.
    """
    hw = torch.tensor(image_sizes, dtype=like.dtype).reshape(-1, 2)
    return hw.flip(-1).repeat(1, 2).to(like.device, non_blocking=True)


def clip_boxes(boxes: torch.Tensor, bounds: torch.Tensor) -> torch.Tensor:
    """xyxy ``boxes [...,4]`` clamped to ``0..bounds`` (``(w, h, w, h)``, broadcast): the
    arithmetic of ``torchvision.ops.clip_boxes_to_image`` with one size per box or image."""
    return torch.minimum(boxes.clamp(min=0), bounds)


def per_image_top_n(image: torch.Tensor, b: int, n: int) -> tuple[torch.Tensor, list[int]]:
    """Each image's first ``n`` entries: (positions into ``image``, entries per image).

    ``image`` ``[N]`` int64: the image of each entry, entries in rank order (NMS survivors best
    first); values ``>= b`` mark entries to drop. Returns the selected positions grouped by
    image (image 0's first), each image's in rank order, and the B group sizes, so that
    ``x[positions].split(sizes)`` gives the per-image lists. One stable sort groups the entries
    by image; the per-image bounds come back to the host in one ``.tolist()`` (the sizes are
    the final output's), then slices: no boolean masks.
    """
    image, order = image.clamp(max=b).sort(stable=True)
    counts = torch.bincount(image, minlength=b + 1)[:b]
    starts = counts.cumsum(0) - counts
    starts, sizes = torch.stack([starts, counts.clamp(max=n)]).tolist()
    if not any(sizes):
        return order[:0], sizes
    return torch.cat([order[s : s + k] for s, k in zip(starts, sizes)]), sizes


def grouped_nms(
    boxes: torch.Tensor, scores: torch.Tensor, group: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS within each group: indices into ``boxes [N,4]`` xyxy kept, best score first.

    One ``batched_nms`` on float64 boxes (its coordinate offsets stay exact), except above
    torchvision's own switch-over (1000 boxes on a CPU, 25,000 on a GPU), where one big NMS
    costs more than a loop over the groups (pairwise work on a CPU, an N×N/64 mask copied to
    the host on a GPU): there the groups are NMS'd as contiguous segments of the boxes
    sorted by group — ``batched_nms``'s per-class loop without its ``idxs == k`` pass (and,
    on a GPU, its ``nonzero`` sync) per group; one ``.tolist()`` gives the segment sizes.
    Same survivors either way; ties keep the input order.
    """
    limit = 1000 if boxes.device.type == "cpu" else 25_000
    if len(boxes) <= limit:
        return batched_nms(boxes.double(), scores.double(), group, iou_threshold)
    group, order = group.sort(stable=True)
    sorted_boxes, sorted_scores = boxes[order], scores[order]
    kept, start = [], 0
    for n in torch.bincount(group).tolist():
        if n:
            segment = slice(start, start + n)
            kept.append(
                order[segment][nms(sorted_boxes[segment], sorted_scores[segment], iou_threshold)]
            )
            start += n
    kept = torch.cat(kept).sort().values  # input order, so that ties stay in it
    return kept[scores[kept].argsort(descending=True, stable=True)]
