"""``ltrb``: distances from a reference centre to the four box sides (FCOS).

torchvision's ``BoxLinearCoder`` arithmetic: ``encode(boxes, reference)`` gives
``(cx − x1, cy − y1, x2 − cx, y2 − cy)`` with ``(cx, cy)`` the reference's centre, divided by the
reference's ``(w, h, w, h)`` when ``normalize_by_size`` (torchvision FCOS: anchors as wide as the
stride); ``decode`` is its inverse. Shapes ``[..., 4]``, broadcasting, xyxy pixels.
"""

from __future__ import annotations

import attrs
import torch

from anchorage.core.interfaces import BoxCoder
from anchorage.core.registry import BOX_CODERS


@BOX_CODERS.register("ltrb", examples=({}, {"normalize_by_size": False}))
class LTRBCoder(BoxCoder):
    """Left, top, right, bottom distances from the reference centre (``BoxLinearCoder``)."""

    @attrs.frozen(kw_only=True)
    class Config:
        normalize_by_size: bool = True

    def __init__(self, cfg: Config) -> None:
        self.normalize = cfg.normalize_by_size

    def _centre_scale(self, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        centre = (reference[..., :2] + reference[..., 2:]) * 0.5
        size = reference[..., 2:] - reference[..., :2]
        scale = size if self.normalize else torch.ones_like(size)
        return centre, scale

    def encode(
        self, boxes: torch.Tensor, reference: torch.Tensor, strides: torch.Tensor | None = None
    ) -> torch.Tensor:
        centre, scale = self._centre_scale(reference.to(boxes.dtype))
        out = torch.cat([centre - boxes[..., :2], boxes[..., 2:] - centre], dim=-1)
        return out / torch.cat([scale, scale], dim=-1)

    def decode(
        self, deltas: torch.Tensor, reference: torch.Tensor, strides: torch.Tensor | None = None
    ) -> torch.Tensor:
        centre, scale = self._centre_scale(reference.to(deltas.dtype))
        d = deltas * torch.cat([scale, scale], dim=-1)
        return torch.cat([centre - d[..., :2], centre + d[..., 2:]], dim=-1)
