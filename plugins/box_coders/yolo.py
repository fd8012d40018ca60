"""``yolo``: YOLO's box parameterisation — sigmoid offsets in the cell, log-scale size.

For a reference (anchor) box of size ``(a_w, a_h)`` centred on its grid cell
``(c_x, c_y)`` of side ``s`` (its level's stride, as ``yolo_anchors`` places them):

    x = c_x + (σ(t_x) − ½)·s      y = c_y + (σ(t_y) − ½)·s
    w = a_w·exp(t_w)              h = a_h·exp(t_h)

so the predicted centre stays inside the cell. ``encode`` is the inverse (``logit`` of the
centre's position in the cell, clamped to ``[eps, 1 − eps]``). The cell side ``s`` of each
reference is its level's stride, which the skeleton passes from ``Anchors.strides``
(``strides=``); the coder never infers it from the reference's position.
"""

from __future__ import annotations

import math

import attrs
import torch

from anchorage.core.interfaces import BoxCoder
from anchorage.core.registry import BOX_CODERS


def _require(strides: torch.Tensor | None) -> torch.Tensor:
    if strides is None:
        raise ValueError(
            "yolo box coder: needs the stride of each reference (strides=, from Anchors.strides); "
            "got None: the references carry no strides (proposals?)"
        )
    return strides[..., None]


@BOX_CODERS.register("yolo", examples=({}, {"eps": 1e-4}))
class YoloCoder(BoxCoder):
    """``(t_x, t_y, t_w, t_h)`` ↔ xyxy boxes; see the module docstring. ``[..., 4]`` shapes."""

    @attrs.frozen(kw_only=True)
    class Config:
        eps: float = attrs.field(default=1e-3, validator=[attrs.validators.gt(0.0)])
        size_clip: float = attrs.field(
            default=math.log(1000.0 / 16), validator=attrs.validators.gt(0.0)
        )

    needs_strides = True

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def conformance_sample(
        self, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(boxes [2,30,4], anchors [2,30,4], strides [2,30])`` inside the coding's domain,
        for the conformance kit's round trip: the coding is bounded (``σ`` keeps a decoded
        centre within half a stride of its anchor's centre), so a box centre must lie inside
        its anchor's cell for ``decode(encode(box))`` to give the box back."""
        level = torch.randint(4, (2, 30), generator=generator)
        stride = torch.tensor([4.0, 8.0, 16.0, 32.0])[level]
        cell = torch.randint(0, 8, (2, 30, 2), generator=generator).float()
        centre = (cell + 0.5) * stride[..., None]
        size = 4 + torch.rand(2, 30, 2, generator=generator) * 60
        anchors = torch.cat([centre - size / 2, centre + size / 2], -1)
        shift = (torch.rand(2, 30, 2, generator=generator) - 0.5) * 0.9 * stride[..., None]
        half = 1 + torch.rand(2, 30, 2, generator=generator) * 40
        boxes = torch.cat([centre + shift - half, centre + shift + half], -1)
        return boxes, anchors, stride

    def encode(
        self, boxes: torch.Tensor, reference: torch.Tensor, strides: torch.Tensor | None = None
    ) -> torch.Tensor:
        return encode_yolo(boxes, reference, _require(strides), self.cfg.eps)

    def decode(
        self, deltas: torch.Tensor, reference: torch.Tensor, strides: torch.Tensor | None = None
    ) -> torch.Tensor:
        return decode_yolo(deltas, reference, _require(strides), self.cfg.size_clip)


def encode_yolo(
    boxes: torch.Tensor, reference: torch.Tensor, stride: torch.Tensor, eps: float = 1e-3
) -> torch.Tensor:
    """YOLO targets of xyxy ``boxes`` for references with cell side ``stride [...,1]``."""
    ref_c = (reference[..., :2] + reference[..., 2:]) * 0.5
    ref_wh = reference[..., 2:] - reference[..., :2]
    c = (boxes[..., :2] + boxes[..., 2:]) * 0.5
    wh = (boxes[..., 2:] - boxes[..., :2]).clamp(min=1e-6)
    inside = ((c - ref_c) / stride.clamp(min=1e-6) + 0.5).clamp(eps, 1 - eps)
    return torch.cat([torch.logit(inside), torch.log(wh / ref_wh)], dim=-1)


def decode_yolo(
    deltas: torch.Tensor, reference: torch.Tensor, stride: torch.Tensor, size_clip: float
) -> torch.Tensor:
    """xyxy boxes from YOLO ``deltas`` for references with cell side ``stride [...,1]``."""
    reference = reference.to(deltas.dtype)
    ref_c = (reference[..., :2] + reference[..., 2:]) * 0.5
    ref_wh = reference[..., 2:] - reference[..., :2]
    c = ref_c + (deltas[..., :2].sigmoid() - 0.5) * stride.to(deltas.dtype)
    half = ref_wh * deltas[..., 2:].clamp(max=size_clip).exp() * 0.5
    return torch.cat([c - half, c + half], dim=-1)
