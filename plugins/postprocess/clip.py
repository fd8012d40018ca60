"""Clipping a batch of boxes to each image's size (the one copy every postprocessor uses)."""

from __future__ import annotations

import torch


def clip_boxes(boxes: torch.Tensor, image_sizes: list[tuple[int, int]]) -> torch.Tensor:
    """Clamp xyxy ``boxes [B,...,4]`` to ``0..w`` / ``0..h`` of image b's ``(h, w)``.

    ``torchvision.ops.clip_boxes_to_image`` takes one size; this is its arithmetic with one size
    per batch row (any number of middle dimensions: ``[B,A,4]``, ``[B,R,C,4]``).
    """
    hw = torch.as_tensor(image_sizes, dtype=boxes.dtype, device=boxes.device)  # [B,2]
    upper = hw.flip(-1).repeat(1, 2)  # [B,4] = (w, h, w, h)
    upper = upper.view(boxes.shape[0], *([1] * (boxes.dim() - 2)), 4)
    return torch.minimum(boxes.clamp(min=0), upper)
