"""IoU between a padded batch of ground-truth boxes and reference boxes.

``batched_box_iou`` is the one place matching code computes IoU for a padded batch; it is
``torchvision.ops.box_iou`` lifted to ``[B,G,4] × [A,4]`` (or per-image references
``[B,A,4]``), with padded / ignored gt rows set to -1 so that no matcher matches them.
"""

from __future__ import annotations

import torch
from torchvision.ops import box_area, box_iou


def batched_box_iou(gt: torch.Tensor, valid: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """IoU of padded gt boxes with reference boxes.

    Args:
        gt: float ``[B,G,4]`` xyxy boxes (rows where ``valid`` is False are ignored).
        valid: bool ``[B,G]``; False for padding and for boxes that must not be matched
            (e.g. crowd boxes).
        anchors: float ``[A,4]`` xyxy, shared by all images, or ``[B,A,4]`` per image
            (e.g. proposals).

    Returns:
        float ``[B,G,A]``: IoU in 0..1 for valid rows, ``-1`` for invalid rows. Same values
        as ``torchvision.ops.box_iou`` per image (bit for bit in the shared-anchor case).
    """
    if gt.dim() != 3 or gt.shape[-1] != 4 or valid.shape != gt.shape[:2]:
        raise ValueError(
            f"batched_box_iou: expected gt [B,G,4] and valid [B,G], got {tuple(gt.shape)} "
            f"and {tuple(valid.shape)}"
        )
    b, g = valid.shape
    if anchors.dim() == 2:
        iou = box_iou(gt.reshape(b * g, 4), anchors).view(b, g, anchors.shape[0])
    elif anchors.dim() == 3 and anchors.shape[0] == b:
        iou = _per_image_iou(gt, anchors)
    else:
        raise ValueError(
            f"batched_box_iou: anchors must be [A,4] or [B,A,4] with B={b}, got "
            f"{tuple(anchors.shape)}"
        )
    return iou.masked_fill(~valid[:, :, None], -1.0)


def _per_image_iou(gt: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    # torchvision.ops.box_iou is 2-D only; this is its arithmetic, broadcast over the batch
    # (same operations in the same order, so the values agree with a per-image box_iou).
    area1 = box_area(gt.flatten(0, 1)).view(gt.shape[:2])
    area2 = box_area(ref.flatten(0, 1)).view(ref.shape[:2])
    lt = torch.max(gt[:, :, None, :2], ref[:, None, :, :2])
    rb = torch.min(gt[:, :, None, 2:], ref[:, None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, :, None] + area2[:, None, :] - inter
    return inter / union
