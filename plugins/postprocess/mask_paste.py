"""Paste fixed-size RoI mask probabilities into the image (``mask_paste``).

This is ``torchvision.models.detection.roi_heads.paste_masks_in_image``: each ``M×M`` mask is
padded by ``padding`` pixels, its box expanded by the same ratio and rounded to integers, the
mask resized bilinearly to the box size and written into a zero image. torchvision resizes
mask by mask (each box has its own output size); a batched ``grid_sample`` version would change
the numerics, and exact agreement with torchvision's Mask R-CNN outputs is a tested contract.
"""

from __future__ import annotations

import attrs
from torchvision.models.detection.roi_heads import paste_masks_in_image

from anchorage.core.interfaces import roles
from anchorage.core.registry import POSTPROCESSORS


@POSTPROCESSORS.register("mask_paste", examples=({}, {"padding": 0}))
class MaskPaste(roles.MaskPostprocessor):
    """RoI masks → full-image masks.

    ``__call__(results, references, image_sizes)``: ``results`` a list of per-image dicts with
    ``masks`` float ``[K,1,M,M]`` (probabilities 0..1) and ``boxes`` float ``[K,4]`` xyxy in the
    pixels of the output image; ``references`` unused (None); ``image_sizes`` the output
    ``(H, W)`` per image. Returns the same dicts with ``masks`` replaced by ``[K,1,H,W]``
    (``[0,1,H,W]`` when K = 0).
    """

    @attrs.frozen(kw_only=True)
    class Config:
        padding: int = attrs.field(default=1, validator=attrs.validators.ge(0))

    def __init__(self, cfg: Config) -> None:
        self.padding = cfg.padding

    def __call__(
        self, results: list[dict], references: object, image_sizes: list[tuple[int, int]]
    ) -> list[dict]:
        out = []
        for result, size in zip(results, image_sizes, strict=True):
            masks, boxes = result["masks"], result["boxes"]
            if masks.dim() != 4 or masks.shape[1] != 1 or masks.shape[0] != boxes.shape[0]:
                raise ValueError(
                    f"mask_paste: expected masks [K,1,M,M] for {boxes.shape[0]} boxes, got "
                    f"{tuple(masks.shape)}"
                )
            h, w = int(size[0]), int(size[1])
            if masks.shape[0] == 0:
                pasted = masks.new_zeros((0, 1, h, w))
            else:
                pasted = paste_masks_in_image(masks, boxes, (h, w), padding=self.padding)
            out.append({**result, "masks": pasted})
        return out
