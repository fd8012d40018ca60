"""Mask R-CNN mask head (``mask_head``): torchvision's ``MaskRCNNHeads`` + ``MaskRCNNPredictor``.

Four 3×3 convs with ReLU (``convs.i.0.*``), a stride-2 transposed conv (``conv5_mask``), ReLU and
a 1×1 conv giving one mask logit map per class incl. background (``mask_fcn_logits``).
Kaiming-normal (fan_out) init, zero biases, as torchvision.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import Conv2dNormActivation

from anchorage.core import injected
from anchorage.core.interfaces import roles
from anchorage.core.registry import HEADS


@HEADS.register(
    "mask_head",
    examples=({"in_channels": 8, "num_classes": 2, "layers": (8, 8), "dim_reduced": 8},),
)
class MaskHead(roles.RoIMaskHead):
    """RoI features → per-class mask logits at twice the pooled resolution.

    ``forward(x)``: float ``[R, in_channels, h, w]`` (14×14 for Mask R-CNN). Returns
    ``mask_logits`` ``[R, C+1, 2h, 2w]``; R may be 0.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        in_channels: int = injected()
        num_classes: int = injected()
        layers: tuple[int, ...] = (256, 256, 256, 256)
        dilation: int = attrs.field(default=1, validator=attrs.validators.ge(1))
        dim_reduced: int = attrs.field(default=256, validator=attrs.validators.gt(0))

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        blocks, c = [], cfg.in_channels
        for out in cfg.layers:
            blocks.append(
                Conv2dNormActivation(
                    c, out, 3, padding=cfg.dilation, dilation=cfg.dilation, norm_layer=None
                )
            )
            c = out
        self.convs = nn.Sequential(*blocks)
        self.conv5_mask = nn.ConvTranspose2d(c, cfg.dim_reduced, 2, 2, 0)
        self.mask_fcn_logits = nn.Conv2d(cfg.dim_reduced, cfg.num_classes + 1, 1, 1, 0)
        for name, param in self.named_parameters():
            if "weight" in name:
                nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu")
            elif "bias" in name:
                nn.init.zeros_(param)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = F.relu(self.conv5_mask(self.convs(x)))
        return {"mask_logits": self.mask_fcn_logits(x)}
