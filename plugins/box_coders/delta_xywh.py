"""``delta_xywh``: the R-CNN / SSD centre-size box parameterisation (torchvision ``BoxCoder``)."""

from __future__ import annotations

import math

import attrs
import torch

from anchorage.core.interfaces import BoxCoder
from anchorage.core.registry import BOX_CODERS


def _positive4(_inst: object, _attr: attrs.Attribute, value: tuple[float, ...]) -> None:
    if any(w <= 0 for w in value):
        raise ValueError(f"weights must all be > 0, got {value}")


@BOX_CODERS.register(
    "delta_xywh", examples=({}, {"weights": (1.0, 1.0, 1.0, 1.0)}, {"bbox_xform_clip": 3.0})
)
class DeltaXYWHCoder(BoxCoder):
    """Deltas ``(wx·dx/w_a, wy·dy/h_a, ww·log(w/w_a), wh·log(h/h_a))`` w.r.t. reference boxes.

    Same arithmetic as ``torchvision.models.detection._utils.BoxCoder`` (``encode_single`` /
    ``decode_single``), generalised to any leading shape: ``boxes``, ``deltas`` and
    ``reference`` are ``[..., 4]`` and broadcast (e.g. gt ``[B,A,4]`` against anchors
    ``[A,4]``). Boxes are xyxy in pixels. SSD uses weights (10, 10, 5, 5) (variances 0.1, 0.2),
    the RPN (1, 1, 1, 1), the R-CNN box head (10, 10, 5, 5). ``decode`` clamps the size deltas
    to ``bbox_xform_clip`` before ``exp``.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        weights: tuple[float, float, float, float] = attrs.field(
            default=(10.0, 10.0, 5.0, 5.0), validator=_positive4
        )
        bbox_xform_clip: float = attrs.field(
            default=math.log(1000.0 / 16), validator=attrs.validators.gt(0.0)
        )

    def __init__(self, cfg: Config) -> None:
        self.weights = tuple(float(w) for w in cfg.weights)
        self.bbox_xform_clip = cfg.bbox_xform_clip

    def encode(
        self, boxes: torch.Tensor, reference: torch.Tensor, strides: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Deltas ``[...,4]`` that take ``reference`` to ``boxes`` (both xyxy ``[...,4]``)."""
        wx, wy, ww, wh = self.weights
        ex_w = reference[..., 2] - reference[..., 0]
        ex_h = reference[..., 3] - reference[..., 1]
        ex_x = reference[..., 0] + 0.5 * ex_w
        ex_y = reference[..., 1] + 0.5 * ex_h
        gt_w = boxes[..., 2] - boxes[..., 0]
        gt_h = boxes[..., 3] - boxes[..., 1]
        gt_x = boxes[..., 0] + 0.5 * gt_w
        gt_y = boxes[..., 1] + 0.5 * gt_h
        dx = wx * (gt_x - ex_x) / ex_w
        dy = wy * (gt_y - ex_y) / ex_h
        dw = ww * torch.log(gt_w / ex_w)
        dh = wh * torch.log(gt_h / ex_h)
        return torch.stack((dx, dy, dw, dh), dim=-1)

    def decode(
        self, deltas: torch.Tensor, reference: torch.Tensor, strides: torch.Tensor | None = None
    ) -> torch.Tensor:
        """xyxy boxes ``[...,4]`` from ``deltas`` relative to ``reference`` (broadcast)."""
        reference = reference.to(deltas.dtype)
        wx, wy, ww, wh = self.weights
        widths = reference[..., 2] - reference[..., 0]
        heights = reference[..., 3] - reference[..., 1]
        ctr_x = reference[..., 0] + 0.5 * widths
        ctr_y = reference[..., 1] + 0.5 * heights
        dx = deltas[..., 0] / wx
        dy = deltas[..., 1] / wy
        dw = torch.clamp(deltas[..., 2] / ww, max=self.bbox_xform_clip)
        dh = torch.clamp(deltas[..., 3] / wh, max=self.bbox_xform_clip)
        pred_x = dx * widths + ctr_x
        pred_y = dy * heights + ctr_y
        half_w = 0.5 * (torch.exp(dw) * widths)
        half_h = 0.5 * (torch.exp(dh) * heights)
        return torch.stack((pred_x - half_w, pred_y - half_h, pred_x + half_w, pred_y + half_h), -1)
