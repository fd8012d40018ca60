"""Fixed-layout detections for exported graphs: the dense postprocessors' end without host syncs.

An exported graph (``anchorage.core.deploy``) cannot return one list per image, nor branch on
how many candidates passed a threshold. The box postprocessors therefore offer
``export_detections``: the same candidates as their eager ``__call__`` kept in a padded
``[B,M]`` layout (a score of ``-inf`` marks a slot that is no candidate), and this module's
``padded_nms`` ends it: one class-wise NMS over the whole batch (torchvision's coordinate
offsets, as ``batched_nms`` uses on a CPU), then each image's best ``detections_per_img``.

Output layout (``DETECTION_OUTPUTS``): ``boxes [B,D,4]`` float32 xyxy, ``scores [B,D]``,
``labels [B,D]`` int64, ``num_detections [B]`` int64; the rows of an image from
``num_detections`` on are zeros (label 0). Same survivors in the same order as the eager path,
equal scores included (both rank them by position: ``stable_topk`` selects the candidates and
the survivors, NMS visits them in position order), up to the float32 rounding of the offset
coordinates.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision.ops import nms

DETECTION_OUTPUTS = ("boxes", "scores", "labels", "num_detections")


def padded_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    num_groups: int,
    nms_thresh: float,
    detections_per_img: int,
) -> dict[str, torch.Tensor]:
    """Class-wise NMS over padded candidates → the fixed detection layout (module docstring).

    ``boxes [B,M,4]`` xyxy, ``scores [B,M]`` (``-inf``: no candidate), ``labels [B,M]`` int64 in
    0..``num_groups - 1``. Boxes of one image and label compete; the best
    ``detections_per_img`` survivors of each image are returned, best first.
    """
    b, m = scores.shape
    valid = torch.isfinite(scores)
    flat = boxes.reshape(-1, 4)
    group = (torch.arange(b, device=boxes.device)[:, None] * num_groups + labels).reshape(-1)
    # torchvision's _batched_nms_coordinate_trick, its maximum over the candidates only
    top = torch.where(valid.reshape(-1, 1), flat, torch.zeros_like(flat)).max()
    shifted = flat + (group.to(flat) * (top + 1))[:, None]
    # equal scores: torchvision's nms (a stable sort) and ONNX Runtime's NonMaxSuppression
    # (1.32, measured: test_ties.py) both visit them in position order
    kept = nms(shifted, scores.reshape(-1), nms_thresh)
    survives = torch.zeros(b * m, dtype=torch.bool, device=boxes.device)
    survives[kept] = True
    ranked = torch.where(survives.reshape(b, m) & valid, scores, float("-inf"))
    best, pos = stable_topk(ranked, min(detections_per_img, m))
    found = torch.isfinite(best)
    out = {
        "boxes": torch.where(
            found[..., None], boxes.gather(1, pos[..., None].expand(-1, -1, 4)), 0
        ),
        "scores": torch.where(found, best, 0),
        "labels": torch.where(found, labels.gather(1, pos), 0),
    }
    if m < detections_per_img:  # fewer candidates than slots: zero rows to the fixed size
        pad = detections_per_img - m
        out = {
            k: torch.cat([v, v.new_zeros((b, pad, *v.shape[2:]))], dim=1) for k, v in out.items()
        }
    out["num_detections"] = found.sum(dim=1)
    return out


def found_rows(found: dict[str, torch.Tensor]) -> torch.Tensor:
    """bool ``[B,D]``: which rows of a fixed detection layout (``padded_nms``'s) hold a
    detection (the first ``num_detections`` of each image)."""
    slots = torch.arange(found["boxes"].shape[1], device=found["boxes"].device)
    return slots[None, :] < found["num_detections"][:, None]


TIE_STEP = 2.0**-50  # tie-break per position: distinct keys for up to 2^25 entries a row
TINY = 2.0**-150  # below float32's smallest subnormal: zero scores get a tie-break too


def stable_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk`` over the last dimension of ``scores [..., M]`` (each >= 0 or ``-inf``),
    equal scores in position order: the best ``k`` per row (sorted) and their positions.

    ``torch.topk`` (CPU as CUDA) and ONNX Runtime's ``TopK`` each order equal scores as they
    like, and ``sort(stable=True)`` does not export to ONNX; this key does, in one ``topk``:
    the score in float64, plus ``2⁻¹⁵⁰``, times ``1 - i·2⁻⁵⁰`` at position ``i``. Distinct
    float32 scores differ by at least ``2⁻²⁴`` of their size, far more than the tie-break moves
    them (``M <= 2²⁵``); equal ones keep ``i`` order by at least 4 float64 ulps. ``-inf``
    entries (no candidate) stay last, in no defined order.
    """
    m = scores.shape[-1]
    tie_break = 1.0 - torch.arange(m, dtype=torch.float64, device=scores.device) * TIE_STEP
    _, pos = ((scores.double() + TINY) * tie_break).topk(k, dim=-1)
    return scores.gather(-1, pos), pos


def anchor_strides(anchors: Any) -> torch.Tensor | None:
    """``Anchors.anchor_strides()`` built from the per-level counts on the host: the same
    float ``[A]``, without ``repeat_interleave(output_size=...)``, which onnxscript 0.7 cannot
    translate (``aten_repeat_interleave_Tensor() got an unexpected keyword argument
    'output_size'``)."""
    if anchors.strides is None:
        return None
    return torch.cat(
        [
            torch.full((n,), float(s), dtype=anchors.boxes.dtype, device=anchors.boxes.device)
            for n, s in zip(anchors.num_per_level, anchors.strides)
        ]
    )


def clip_to(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """xyxy ``boxes [...,4]`` clamped to ``0..(w, h)`` of one ``(h, w)`` for the whole batch
    (``batching.clip_boxes``'s arithmetic)."""
    h, w = image_size
    bounds = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
    return torch.minimum(boxes.clamp(min=0), bounds)
