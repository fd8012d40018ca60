"""``yolo``: YOLO's box parameterisation — sigmoid offsets in the cell, log-scale size.

For a reference (anchor) box of size ``(a_w, a_h)`` centred on its grid cell
``(c_x, c_y)`` of side ``s`` (the level's stride, as ``yolo_anchors`` places them):

    x = c_x + (σ(t_x) − ½)·s      y = c_y + (σ(t_y) − ½)·s
    w = a_w·exp(t_w)              h = a_h·exp(t_h)

so the predicted centre stays inside the cell. ``encode`` is the inverse (``logit`` of the
centre's position in the cell, clamped to ``[eps, 1 − eps]``). The cell side of each
reference is found from its centre: with ``strides`` each twice the previous (default
2 … 128, so any power-of-two pyramid works unconfigured), a centre ``(k + ½)·s`` on both
axes belongs to exactly one stride. The batch tensor's sides
must be multiples of the largest stride (``preprocess.size_divisible``), so every level's
cells are exactly ``s`` wide; a reference on no stride's lattice decodes with ``s = 0``.
"""

from __future__ import annotations

import math

import attrs
import torch

from anchorage.core.host_sync import from_host
from anchorage.core.interfaces import BoxCoder
from anchorage.core.registry import BOX_CODERS


def _strides(_inst: object, attr: attrs.Attribute, value: tuple[int, ...]) -> None:
    if not value or any(v <= 0 for v in value) or list(value) != sorted(set(value)):
        raise ValueError(f"{attr.name}: expected increasing strides > 0, got {list(value)}")


def cell_size(reference: torch.Tensor, strides: tuple[int, ...]) -> torch.Tensor:
    """float ``[...,1]``: the stride whose cell-centre lattice holds each reference's centre."""
    centre = (reference[..., :2] + reference[..., 2:]) * 0.5
    table = from_host(strides, dtype=reference.dtype, device=reference.device)
    pos = centre[..., None, :] / table[:, None] - 0.5  # [...,L,2]
    on_lattice = ((pos - pos.round()).abs() < 1e-3).all(dim=-1)  # [...,L], float-rounding safe
    return (on_lattice * table).amax(dim=-1, keepdim=True)


@BOX_CODERS.register("yolo", examples=({}, {"strides": (4, 8), "eps": 1e-4}))
class YoloCoder(BoxCoder):
    """``(t_x, t_y, t_w, t_h)`` ↔ xyxy boxes; see the module docstring. ``[..., 4]`` shapes."""

    @attrs.frozen(kw_only=True)
    class Config:
        strides: tuple[int, ...] = attrs.field(
            default=(2, 4, 8, 16, 32, 64, 128), validator=_strides
        )
        eps: float = attrs.field(default=1e-3, validator=[attrs.validators.gt(0.0)])
        size_clip: float = attrs.field(
            default=math.log(1000.0 / 16), validator=attrs.validators.gt(0.0)
        )

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def conformance_sample(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(boxes, anchors)`` ``[2,30,4]`` within the coding's domain (conformance kit):
        anchors centred on cells of the configured strides, box centres inside their cells."""
        table = torch.tensor(self.cfg.strides, dtype=torch.float32)
        stride = table[torch.randint(len(table), (2, 30, 1), generator=generator)]
        cell = torch.randint(0, 8, (2, 30, 2), generator=generator).float()
        centre = (cell + 0.5) * stride
        size = 4 + torch.rand(2, 30, 2, generator=generator) * 60
        anchors = torch.cat([centre - size / 2, centre + size / 2], -1)
        shift = (torch.rand(2, 30, 2, generator=generator) - 0.5) * 0.9 * stride
        half = 1 + torch.rand(2, 30, 2, generator=generator) * 40
        boxes = torch.cat([centre + shift - half, centre + shift + half], -1)
        return boxes, anchors

    def encode(self, boxes: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return encode_yolo(boxes, reference, cell_size(reference, self.cfg.strides), self.cfg.eps)

    def decode(self, deltas: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        stride = cell_size(reference, self.cfg.strides)
        return decode_yolo(deltas, reference, stride, self.cfg.size_clip)


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
