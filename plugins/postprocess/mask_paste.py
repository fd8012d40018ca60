"""Paste fixed-size RoI mask probabilities into the image (``mask_paste``).

torchvision's ``paste_masks_in_image`` arithmetic: each ``M×M`` mask is padded by ``padding``
pixels, its box expanded by the same ratio and truncated to integers, the mask resized
bilinearly (``align_corners=False``) to the box's size and written into a zero image.

torchvision does it mask by mask in Python, reading each box's corners on the host: on a GPU
that is a host-device synchronisation per detection (hundreds per batch). ``method:
batched`` computes every mask at once: the bilinear sample of each image pixel inside its
box, from the same source coordinates ``F.interpolate`` uses (rows first, then columns: the
values equal torchvision's up to float rounding, ~1e-7), with no host read and no loop but
over chunks of detections (bounding the temporary memory). ``per_mask`` is torchvision's own
function. ``auto`` (the default) takes ``batched`` on accelerators and ``per_mask`` on the
CPU, where the per-mask loop costs no synchronisation and touches only the box regions.
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import expand_boxes, paste_masks_in_image

from anchorage.core.interfaces import roles
from anchorage.core.registry import POSTPROCESSORS

_CHUNK_ELEMENTS = 1 << 26  # detections per chunk: at most ~64M output pixels at a time


@POSTPROCESSORS.register(
    "mask_paste",
    examples=({}, {"padding": 0}, {"method": "batched"}),
)
class MaskPaste(roles.MaskPostprocessor):
    """RoI masks → full-image masks.

    ``__call__(results, image_sizes)``: ``results`` a list of per-image dicts with
    ``masks`` float ``[K,1,M,M]`` (probabilities 0..1) and ``boxes`` float ``[K,4]`` xyxy in the
    pixels of the output image; ``image_sizes`` the output
    ``(H, W)`` per image. Returns the same dicts with ``masks`` replaced by ``[K,1,H,W]``
    (``[0,1,H,W]`` when K = 0).
    """

    @attrs.frozen(kw_only=True)
    class Config:
        padding: int = attrs.field(default=1, validator=attrs.validators.ge(0))
        method: Literal["auto", "batched", "per_mask"] = "auto"

    def __init__(self, cfg: Config) -> None:
        self.padding = cfg.padding
        self.method = cfg.method

    def __call__(self, results: list[dict], image_sizes: list[tuple[int, int]]) -> list[dict]:
        out = []
        for result, size in zip(results, image_sizes, strict=True):
            masks, boxes = result["masks"], result["boxes"]
            if masks.dim() != 4 or masks.shape[1] != 1 or masks.shape[0] != boxes.shape[0]:
                raise ValueError(
                    f"mask_paste: expected masks [K,1,M,M] for {boxes.shape[0]} boxes, got "
                    f"{tuple(masks.shape)}"
                )
            h, w = int(size[0]), int(size[1])
            batched = self.method == "batched" or (
                self.method == "auto" and masks.device.type != "cpu"
            )
            if masks.shape[0] == 0:
                pasted = masks.new_zeros((0, 1, h, w))
            elif batched:
                pasted = paste_masks_batched(masks, boxes, (h, w), self.padding)
            else:
                pasted = paste_masks_in_image(masks, boxes, (h, w), padding=self.padding)
            out.append({**result, "masks": pasted})
        return out

    def export_paste(
        self, masks: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int]
    ) -> torch.Tensor:
        """``__call__`` for an exported graph: ``masks [B,D,1,M,M]`` and ``boxes [B,D,4]`` xyxy
        output pixels, every image ``image_size`` ``(H, W)`` → ``[B,D,1,H,W]`` (the batched
        method: no host read, no loop over detections)."""
        b, d, _, m, _ = masks.shape
        padded = F.pad(masks.reshape(b * d, m, m), (self.padding,) * 4)
        corners = expand_boxes(boxes.reshape(b * d, 4), (m + 2 * self.padding) / m)
        pasted = _paste(padded, corners.to(torch.int64), *image_size)  # one chunk: the output
        return pasted.reshape(b, d, 1, *pasted.shape[-2:])


def paste_masks_batched(
    masks: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int], padding: int = 1
) -> torch.Tensor:
    """``[K,1,M,M]`` masks, ``[K,4]`` xyxy boxes → ``[K,1,H,W]``, without host reads.

    torchvision's ``paste_masks_in_image`` numbers (see the module docstring).
    """
    m = masks.shape[-1]
    padded = F.pad(masks[:, 0], (padding,) * 4)  # [K,M',M']
    corners = expand_boxes(boxes, (m + 2 * padding) / m).to(torch.int64)
    h, w = image_size
    per_chunk = max(1, _CHUNK_ELEMENTS // max(1, h * w))
    parts = [
        _paste(padded[i : i + per_chunk], corners[i : i + per_chunk], h, w)
        for i in range(0, padded.shape[0], per_chunk)
    ]
    return torch.cat(parts)[:, None]


def _paste(masks: torch.Tensor, corners: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``[k,S,S]`` padded masks and int64 ``[k,4]`` boxes → ``[k,H,W]``."""
    x0, y0, x1, y1 = corners.unbind(1)
    size = masks.shape[-1]
    row0, row1, row_w1, rows_in = _axis(y0, y1, h, size)  # [k,H]
    col0, col1, col_w1, cols_in = _axis(x0, x1, w, size)  # [k,W]
    k = masks.shape[0]
    index = torch.arange(k, device=masks.device)[:, None]
    # rows of the box-sized mask, still at the source's column resolution: [k,H,S]
    top, bottom = masks[index, row0], masks[index, row1]
    rows = (1 - row_w1)[..., None] * top + row_w1[..., None] * bottom
    left = rows.gather(2, col0[:, None, :].expand(k, h, w))
    right = rows.gather(2, col1[:, None, :].expand(k, h, w))
    pasted = (1 - col_w1)[:, None, :] * left + col_w1[:, None, :] * right
    return torch.where(rows_in[:, :, None] & cols_in[:, None, :], pasted, 0.0)


def _axis(
    start: torch.Tensor, end: torch.Tensor, length: int, size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One axis of the bilinear resize of a ``size``-long source to each box's extent.

    ``start``/``end`` int64 ``[k]`` (inclusive box bounds, torchvision's ``+ 1`` width); the
    image axis has ``length`` pixels. Returns, per box and image pixel ``[k,length]``: the two
    source indices, the weight of the second, and whether the pixel lies in the box. The
    source coordinate is ``F.interpolate``'s (``align_corners=False``): ``(i + 0.5) * size /
    extent - 0.5``, clamped at 0.
    """
    extent = (end - start + 1).clamp(min=1)
    pixel = torch.arange(length, device=start.device)
    local = pixel[None, :] - start[:, None]  # [k,length], 0 at the box's first pixel
    scale = size / extent.to(torch.float32)
    source = (scale[:, None] * (local.to(torch.float32) + 0.5) - 0.5).clamp(min=0)
    first = source.to(torch.int64).clamp(max=size - 1)
    second = torch.where(first < size - 1, first + 1, first)
    weight = (source - first).clamp(0.0, 1.0)
    inside = (local >= 0) & (pixel[None, :] <= end[:, None])
    return first, second, weight, inside
