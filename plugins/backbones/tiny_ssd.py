"""``tiny_ssd_base``: the TinySSD feature extractor of Dive into Deep Learning (§14.7)."""

from __future__ import annotations

import attrs
import torch
from torch import nn

from anchorage.core.interfaces import Backbone, FeatureSpec
from anchorage.core.registry import BACKBONES
from anchorage.plugins.backbones.max_pool import SeparableMaxPool2d


def down_sample_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3×3 conv + BatchNorm + ReLU, then a 2×2 max-pool (halves H and W)."""
    layers: list[nn.Module] = []
    for cin in (in_channels, out_channels):
        layers += [
            nn.Conv2d(cin, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        ]
    layers.append(SeparableMaxPool2d(2))
    return nn.Sequential(*layers)


def _non_empty_positive(_inst: object, attr: attrs.Attribute, value: tuple[int, ...]) -> None:
    if not value or any(v <= 0 for v in value):
        raise ValueError(
            f"{attr.name}: expected a non-empty list of channel counts > 0, got {value}"
        )


@BACKBONES.register(
    "tiny_ssd_base", examples=({}, {"base_channels": (8, 8, 16), "extra_channels": (16, 24)})
)
class TinySSDBase(Backbone):
    """d2l TinySSD: a base net of down-sampling blocks, more blocks, then a global max-pool.

    The base net chains ``down_sample_block`` over ``3 → base_channels`` (d2l: 16, 32, 64;
    stride 8); each entry of ``extra_channels`` (d2l: 128, 128, 128) adds one more block and
    one more level; a final ``AdaptiveMaxPool2d(1)`` gives the 1×1 level. Levels ``blk0`` ..
    ``blk{n}``, d2l's five at 256×256 input: 32², 16², 8², 4², 1². The last level's declared
    stride is twice the one before (it is global).
    """

    @attrs.frozen(kw_only=True)
    class Config:
        base_channels: tuple[int, ...] = attrs.field(
            default=(16, 32, 64), validator=_non_empty_positive
        )
        extra_channels: tuple[int, ...] = attrs.field(
            default=(128, 128, 128), validator=_non_empty_positive
        )

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        chans = (3, *cfg.base_channels)
        base = nn.Sequential(*[down_sample_block(a, b) for a, b in zip(chans, chans[1:])])
        blocks: list[nn.Module] = [base]
        chans = (cfg.base_channels[-1], *cfg.extra_channels)
        blocks += [down_sample_block(a, b) for a, b in zip(chans, chans[1:])]
        blocks.append(nn.AdaptiveMaxPool2d((1, 1)))
        self.blocks = nn.ModuleList(blocks)
        stride = 2 ** len(cfg.base_channels)
        info = []
        for i, c in enumerate(chans):
            info.append(FeatureSpec(f"blk{i}", c, stride * 2**i))
        info.append(FeatureSpec(f"blk{len(chans)}", chans[-1], info[-1].stride * 2))
        self.feature_info = info

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x [B,3,H,W]`` → ``{blk0: [B,C0,H/8,W/8], ..., blk{n}: [B,Cn,1,1]}``."""
        out = {}
        for spec, block in zip(self.feature_info, self.blocks):
            x = block(x)
            out[spec.name] = x
        return out
