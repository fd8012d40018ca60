"""U-Net (Ronneberger et al., 2015) for semantic segmentation (``unet``).

Encoder: ``depth`` stages of two 3×3 conv–BN–ReLU blocks followed by 2×2 max pooling, the
channels doubling from ``base_channels``; a bottleneck of two conv blocks. Decoder: per stage a
2×2 stride-2 ``ConvTranspose2d`` halving the channels, concatenation with the encoder's
feature map of the same resolution (the skip), two conv blocks. A 1×1 conv gives C+1 logits.
Convolutions are padded ("same"), so the output has the input's size; inputs are zero-padded
bottom/right to a multiple of 2^depth and the logits cropped back.

Normalisation, the loss, tiled inference and the per-image eval output come from
``SegmentationModel``.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import Conv2dNormActivation

from anchorage.core.registry import MODELS
from anchorage.plugins.backbones.max_pool import SeparableMaxPool2d

from .segmentation import SegmentationModel, SegmentationOptions


def double_conv(in_channels: int, out_channels: int, norm: bool) -> nn.Sequential:
    """Two 3×3 conv (+BN) + ReLU blocks (``[B,in,H,W]`` → ``[B,out,H,W]``)."""
    norm_layer = nn.BatchNorm2d if norm else None
    return nn.Sequential(
        Conv2dNormActivation(in_channels, out_channels, 3, norm_layer=norm_layer),
        Conv2dNormActivation(out_channels, out_channels, 3, norm_layer=norm_layer),
    )


@MODELS.register(
    "unet",
    examples=(
        {"num_classes": 2, "base_channels": 4, "depth": 2},
        {"num_classes": 1, "base_channels": 4, "depth": 1, "norm": False, "tile_size": (32, 32)},
    ),
)
class UNet(SegmentationModel):
    """Encoder–decoder with concatenation skips and transposed-conv upsampling.

    ``predict(x)``: float ``[B, in_channels, H, W]`` (any H, W) → ``{"out": [B, C+1, H, W]}``.
    See ``SegmentationModel`` for the train / eval I/O.
    """

    @attrs.frozen(kw_only=True)
    class Config(SegmentationOptions):
        in_channels: int = attrs.field(default=3, validator=attrs.validators.gt(0))
        base_channels: int = attrs.field(default=64, validator=attrs.validators.gt(0))
        depth: int = attrs.field(
            default=4, validator=[attrs.validators.ge(1), attrs.validators.le(6)]
        )
        norm: bool = True

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        widths = [cfg.base_channels * 2**i for i in range(cfg.depth + 1)]
        ins = [cfg.in_channels, *widths[:-2]]
        self.encoders = nn.ModuleList(double_conv(i, o, cfg.norm) for i, o in zip(ins, widths[:-1]))
        self.pool = SeparableMaxPool2d(2)
        self.bottleneck = double_conv(widths[-2], widths[-1], cfg.norm)
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
            for i in reversed(range(cfg.depth))
        )
        self.decoders = nn.ModuleList(
            double_conv(2 * widths[i], widths[i], cfg.norm) for i in reversed(range(cfg.depth))
        )
        self.classifier = nn.Conv2d(widths[0], cfg.num_classes + 1, 1)

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        m = 2 ** len(self.encoders)
        x = F.pad(x, (0, (-w) % m, 0, (-h) % m))
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = decoder(torch.cat([skip, up(x)], dim=1))
        return {"out": self.classifier(x)[..., :h, :w]}
