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


def sorted_counts(values: torch.Tensor, n: int) -> torch.Tensor:
    """How often each of ``0..n-1`` occurs in ascending int64 ``values [N]`` (``[n]`` int64).

    ``torch.bincount(values, minlength=n)[:n]`` without bincount's GPU sync (CUDA's bincount
    reads the maximum on the host to size its output): on sorted values the counts are the
    differences of the ``searchsorted`` bounds. Values ``>= n`` are not counted.
    """
    edges = torch.arange(n + 1, device=values.device, dtype=values.dtype)
    return torch.searchsorted(values, edges).diff()


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
    counts = sorted_counts(image, b)
    starts = counts.cumsum(0) - counts
    starts, sizes = torch.stack([starts, counts.clamp(max=n)]).tolist()
    if not any(sizes):
        return order[:0], sizes
    return torch.cat([order[s : s + k] for s, k in zip(starts, sizes)]), sizes


def select_nms(
    img: torch.Tensor,
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    shape: tuple[int, int],
    nms_thresh: float,
    detections_per_img: int,
) -> list[dict[str, torch.Tensor]]:
    """Candidates → per-image detections after class-wise NMS (the dense postprocessors' end).

    ``img [N]`` int64 image index, ``boxes [N,4]`` xyxy, ``scores [N]``, ``labels [N]`` int64
    in 1..C; ``shape``: ``(B, C)``, the batch size and the number of classes. One
    ``batched_nms_on_device`` over (image, class) groups, then each image's best
    ``detections_per_img`` (``per_image_top_n``). Returns B dicts ``boxes [K,4]``,
    ``scores [K]``, ``labels [K]``, sorted by score, equal scores in candidate order (as an
    exported graph's ``padded.padded_nms`` keeps them).
    """
    batch, num_classes = shape
    if img.numel() == 0:  # nothing passed the thresholds (shapes are known on the host)
        none = {"boxes": boxes[:0], "scores": scores[:0], "labels": labels[:0]}
        return [dict(none) for _ in range(batch)]
    kept = batched_nms_on_device(boxes, scores, img * (num_classes + 1) + labels, nms_thresh)
    kept = by_score(kept, scores)
    pos, sizes = per_image_top_n(img[kept], batch, detections_per_img)
    mine = kept[pos]  # per image, best first
    parts = (boxes[mine], scores[mine], labels[mine])
    return [
        {"boxes": x, "scores": s, "labels": lab}
        for x, s, lab in zip(*(p.split(sizes) for p in parts))
    ]


def by_score(kept: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """NMS survivors ``kept [K]`` (indices into ``scores [N]``) best score first, equal scores
    in index order. ``batched_nms`` leaves ties as an unstable sort put them (its per-class
    loop above 1,000 boxes on a CPU, CUDA's sort), which is no order an exported graph can
    reproduce."""
    kept = kept.sort().values
    return kept[scores[kept].argsort(descending=True, stable=True)]


def grouped_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    group: torch.Tensor,
    iou_threshold: float,
    *,
    limit: int | None = None,
    per_group: bool | None = None,
) -> torch.Tensor:
    """NMS within each group: indices into ``boxes [N,4]`` xyxy kept, best score first.

    Up to ``limit`` boxes (torchvision's own switch-over: 1000 on a CPU, 25,000 on a GPU), one
    ``batched_nms`` on float64 boxes (its coordinate offsets stay exact). Above it one big NMS
    costs too much (pairwise work on a CPU, an N×N/64 mask copied to the host on a GPU), so
    the boxes are sorted by group (one ``.tolist()`` gives the group sizes) and NMS'd as
    contiguous slices: one group per call on a CPU (``per_group``: ``batched_nms``'s per-class
    loop without its ``idxs == k`` pass per group), consecutive groups of up to ``limit``
    boxes per call on a GPU. Same survivors either way; ties keep the input order.
    """
    cpu = boxes.device.type == "cpu"
    limit = limit if limit is not None else (1000 if cpu else 25_000)
    per_group = cpu if per_group is None else per_group
    if len(boxes) <= limit:
        return batched_nms_on_device(boxes.double(), scores.double(), group, iou_threshold)
    group, order = group.sort(stable=True)
    boxes, ranked = boxes[order], scores[order]
    if not per_group:  # several groups per call: exact offsets
        boxes, ranked = boxes.double(), ranked.double()
    kept = []
    for lo, hi in _slices(torch.bincount(group).tolist(), 0 if per_group else limit):
        if per_group:
            part = nms(boxes[lo:hi], ranked[lo:hi], iou_threshold)
        else:
            part = batched_nms_on_device(boxes[lo:hi], ranked[lo:hi], group[lo:hi], iou_threshold)
        kept.append(order[lo:hi][part])
    kept = torch.cat(kept).sort().values  # input order, so that ties stay in it
    return kept[scores[kept].argsort(descending=True, stable=True)]


def batched_nms_on_device(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    group: torch.Tensor,
    iou_threshold: float,
    *,
    one_call: bool | None = None,
) -> torch.Tensor:
    """``torchvision.ops.batched_nms``, but one NMS call at any size off the CPU.

    torchvision switches to a Python loop over the groups above 5,000 boxes on a GPU as well
    (one NMS call and one host sync per group: hundreds for an (image, class) grouping).
    ``one_call`` (default: off the CPU) keeps its coordinate trick instead: each group's
    boxes shifted apart by more than the boxes' extent, in float64 so that the shifted
    coordinates stay exact (the same survivors as NMS group by group), then one ``nms``. On a
    CPU torchvision's own choice stands (its loop is faster there for many boxes).
    """
    one_call = boxes.device.type != "cpu" if one_call is None else one_call
    if not one_call or boxes.numel() == 0:
        return batched_nms(boxes, scores, group, iou_threshold)
    boxes = boxes.double()
    shifted = boxes + (group.double() * (boxes.max() - boxes.min() + 1))[:, None]
    return nms(shifted, scores.double(), iou_threshold)


def _slices(sizes: list[int], limit: int) -> list[tuple[int, int]]:
    """Consecutive groups (sizes in order) merged into slices of at most ``limit`` boxes (a
    larger group alone); ``limit`` 0: one slice per non-empty group."""
    out: list[tuple[int, int]] = []
    lo = hi = 0
    for n in sizes:
        if n == 0:
            continue
        if hi > lo and hi - lo + n > limit:
            out.append((lo, hi))
            lo = hi
        hi += n
    if hi > lo:
        out.append((lo, hi))
    return out
