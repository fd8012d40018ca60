"""``ssd_head``: SSD's per-level 3×3 class and box convolutions (torchvision ``SSDHead``)."""

from __future__ import annotations

from typing import Any, Literal

import attrs
import torch
from torch import nn

from anchorage.core.interfaces import DenseHead, DenseHeadConfig
from anchorage.core.registry import HEADS


def _flatten(x: torch.Tensor, columns: int) -> torch.Tensor:
    """``[B, a·K, H, W]`` → ``[B, H·W·a, K]`` (location-major, anchor-minor: torchvision order)."""
    b, _, h, w = x.shape
    return x.view(b, -1, columns, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, columns)


@HEADS.register(
    "ssd_head",
    examples=(
        {"in_channels": (8, 16), "num_anchors": (4, 6), "num_classes": 3},
        {"in_channels": (8, 16), "num_anchors": (1, 1), "num_classes": 3, "background": False},
    ),
)
class SSDHead(DenseHead):
    """Per level l: a conv with ``a_l·K`` outputs (class logits) and one with ``4·a_l``.

    ``forward(features)``: dict of ``[B, in_channels[l], h_l, w_l]`` fine → coarse. Returns
    ``cls_logits [B,A,K]`` and ``bbox_deltas [B,A,4]``: K = C+1 with column 0 the background
    (softmax scoring, ``background: true``) or K = C (sigmoid scoring, e.g. with the
    ``sigmoid_focal`` loss and ``multiclass_nms`` ``score: sigmoid``). Levels
    concatenated, each flattened location by location with the ``a_l`` anchors of a location
    together — the order of the anchor generators and of torchvision's ``SSDHead``.
    ``in_channels``, ``num_anchors`` and ``num_classes`` (C, without background) are injected.
    ``init: xavier`` is torchvision's (uniform Xavier weights, zero bias).
    """

    @classmethod
    def background_column(cls, cfg: Any) -> bool:
        return cfg.background

    @attrs.frozen(kw_only=True)
    class Config(DenseHeadConfig):
        kernel_size: int = attrs.field(default=3, validator=attrs.validators.ge(1))
        init: Literal["xavier", "default"] = "xavier"
        background: bool = True

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.num_columns = cfg.num_classes + int(cfg.background)
        conv = dict(kernel_size=cfg.kernel_size, padding=cfg.kernel_size // 2)
        pairs = cfg.levels("ssd_head")
        self.cls_convs = nn.ModuleList(nn.Conv2d(c, a * self.num_columns, **conv) for c, a in pairs)
        self.box_convs = nn.ModuleList(nn.Conv2d(c, 4 * a, **conv) for c, a in pairs)
        if cfg.init == "xavier":
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.constant_(m.bias, 0.0)

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        maps = list(features.values())
        if len(maps) != len(self.cls_convs):
            raise ValueError(f"ssd_head: built for {len(self.cls_convs)} levels, got {len(maps)}")
        cls = [_flatten(conv(x), self.num_columns) for conv, x in zip(self.cls_convs, maps)]
        box = [_flatten(conv(x), 4) for conv, x in zip(self.box_convs, maps)]
        return {"cls_logits": torch.cat(cls, dim=1), "bbox_deltas": torch.cat(box, dim=1)}
