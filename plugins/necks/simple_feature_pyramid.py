"""``simple_feature_pyramid``: ViTDet's simple feature pyramid over one single-scale map.

A plain ViT gives every level at stride 16. Li et al. 2022 ("Exploring Plain Vision
Transformer Backbones for Object Detection", ViTDet) build the pyramid from its last map
alone, without FPN's top-down path. With the input at stride ``s`` and ``C`` channels, each
``scale_factor`` gives one level at stride ``s / scale_factor``:

- ``4``: transposed conv 2×2/2 to ``C/2``, norm, GELU, transposed conv 2×2/2 to ``C/4``;
- ``2``: one transposed conv 2×2/2 to ``C/2``;
- ``1``: the input as it is;
- ``0.5``: max-pool 2×2/2;

each followed by a 1×1 conv + norm and a 3×3 conv + norm to ``out_channels`` (the convs have
no bias when a norm follows). ``norm: layer_norm`` is a LayerNorm over the channels of each
position (detectron2's ``LN``, eps 1e-6). ``top_block: maxpool`` adds one more level from the
coarsest output, max-pooled with kernel 1, stride 2 (detectron2's / torchvision's
``LastLevelMaxPool``: Faster R-CNN's P6, or a RetinaNet / FCOS P6). Convs are initialised
as detectron2's ``c2_xavier_fill`` (Kaiming-uniform, a=1, zero bias).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from anchorage.core import injected
from anchorage.core.interfaces import FeatureSpec, Neck
from anchorage.core.registry import NECKS

SCALES = (4.0, 2.0, 1.0, 0.5)
"""The scale factors ViTDet uses; each is one resampling stage above."""

_EXAMPLE_IN = (FeatureSpec("c4_10", 16, 16), FeatureSpec("c4_11", 16, 16))


def _check_scales(_inst: object, _attr: attrs.Attribute, value: tuple[float, ...]) -> None:
    wrong = [s for s in value if s not in SCALES]
    if not value or wrong:
        raise ValueError(
            f"scale_factors: expected one or more of {list(SCALES)}, got {list(value)}"
        )
    if list(value) != sorted(set(value), reverse=True):
        raise ValueError(
            f"scale_factors: expected distinct values, fine to coarse (decreasing), got "
            f"{list(value)}"
        )


def _names(info: Sequence[FeatureSpec]) -> str:
    return ", ".join(f.name for f in info)


def _level(stride: int) -> int:
    return max(stride.bit_length() - 1, 0)


@NECKS.register(
    "simple_feature_pyramid",
    examples=(
        {"in_feature_info": _EXAMPLE_IN, "out_channels": 8},
        {"in_feature_info": _EXAMPLE_IN[:1], "out_channels": 8, "top_block": "none"},
        {
            "in_feature_info": _EXAMPLE_IN,
            "in_feature": "c4_10",
            "out_channels": 8,
            "scale_factors": (2.0, 1.0, 0.5),
            "norm": "none",
        },
    ),
)
class SimpleFeaturePyramid(Neck):
    """ViTDet's simple feature pyramid from one input level, plus an optional top level.

    ``forward(features)``: the backbone's dict; only ``in_feature`` (default: the last, coarsest
    level of ``in_feature_info``) is read, ``[B, C, h, w]`` at stride ``s``. Returns ``dict``
    fine → coarse: ``p<k>`` per scale factor ``f`` (stride ``s / f``, ``k = log2(stride)``,
    ``[B, out_channels, h*f, w*f]``; ``f = 0.5`` floors odd sizes), then with
    ``top_block: maxpool`` ``p<k+1>`` (stride doubled, ``ceil`` of half the size). A stride-16
    ViT with the defaults gives ``p2, p3, p4, p5, p6`` (strides 4..64).

    ``scale_factors``: a decreasing subset of ``(4.0, 2.0, 1.0, 0.5)``; ``s / f`` must be a
    whole stride. The upsampling stages need ``C`` divisible by 4 (``f = 4``) or 2 (``f = 2``).
    """

    @attrs.frozen(kw_only=True)
    class Config:
        in_feature_info: tuple[FeatureSpec, ...] = injected()
        in_feature: str | None = None
        out_channels: int = attrs.field(default=256, validator=attrs.validators.gt(0))
        scale_factors: tuple[float, ...] = attrs.field(default=SCALES, validator=_check_scales)
        top_block: Literal["maxpool", "none"] = "maxpool"
        norm: Literal["layer_norm", "none"] = "layer_norm"

        def __attrs_post_init__(self) -> None:
            source = self.source()
            for scale in self.scale_factors:
                stride = source.stride / scale
                divisor = {4.0: 4, 2.0: 2}.get(scale, 1)
                if stride != int(stride) or stride < 1 or source.channels % divisor:
                    raise ValueError(
                        f"scale_factors: {scale} needs an input stride divisible by {scale:g} "
                        f"and channels divisible by {divisor}; {source.name} has stride "
                        f"{source.stride}, {source.channels} channels"
                    )

        def source(self) -> FeatureSpec:
            """The input level the pyramid is built from (``in_feature`` or the last)."""
            info = list(self.in_feature_info)
            if not info:
                raise ValueError(
                    "simple_feature_pyramid needs one input level (in_feature_info is empty: "
                    "the backbone declares no feature)"
                )
            if self.in_feature is None:
                return info[-1]
            match = [f for f in info if f.name == self.in_feature]
            if not match:
                raise ValueError(
                    f"in_feature: {self.in_feature!r} is not a feature of the backbone "
                    f"({_names(info)}); expected one of them, or null for the last"
                )
            return match[0]

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.in_feature_info = list(cfg.in_feature_info)
        source = cfg.source()
        self.in_feature = source.name
        strides = [int(source.stride / f) for f in cfg.scale_factors]
        names = [f"p{_level(s)}" for s in strides]
        self.stages = nn.ModuleDict(
            {
                name: _stage(source.channels, scale, cfg.out_channels, cfg.norm)
                for name, scale in zip(names, cfg.scale_factors)
            }
        )
        self.top_block = cfg.top_block == "maxpool"
        if self.top_block:
            names.append(f"p{_level(strides[-1]) + 1}")
            strides.append(strides[-1] * 2)
        self.feature_info = [FeatureSpec(n, cfg.out_channels, s) for n, s in zip(names, strides)]

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{in_feature: [B,C,h,w], ...}`` → ``{p<k>: [B,out_channels,...]}`` fine → coarse."""
        x = features[self.in_feature]
        out = {name: stage(x) for name, stage in self.stages.items()}
        if self.top_block:
            last = out[next(reversed(out))]
            out[self.feature_info[-1].name] = F.max_pool2d(last, kernel_size=1, stride=2)
        return out


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of each position: ``[B,C,h,w]`` → ``[B,C,h,w]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(
            x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps
        )
        return y.permute(0, 3, 1, 2)


def _norm(channels: int, kind: str) -> nn.Module:
    return LayerNorm2d(channels, eps=1e-6) if kind == "layer_norm" else nn.Identity()


def _conv(cin: int, cout: int, kernel: int, norm: str) -> nn.Sequential:
    """``kernel``×``kernel`` conv (same padding) + norm; bias only without a norm."""
    conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=norm == "none")
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, _norm(cout, norm))


def _resample(channels: int, scale: float, norm: str) -> tuple[list[nn.Module], int]:
    """The layers that bring a map to ``scale`` × its size, and their output channels."""
    if scale == 4.0:
        half, quarter = channels // 2, channels // 4
        layers = [
            nn.ConvTranspose2d(channels, half, 2, stride=2),
            _norm(half, norm),
            nn.GELU(),
            nn.ConvTranspose2d(half, quarter, 2, stride=2),
        ]
        return layers, quarter
    if scale == 2.0:
        return [nn.ConvTranspose2d(channels, channels // 2, 2, stride=2)], channels // 2
    if scale == 0.5:
        return [nn.MaxPool2d(kernel_size=2, stride=2)], channels
    return [], channels


def _stage(channels: int, scale: float, out_channels: int, norm: str) -> nn.Sequential:
    """Resample by ``scale``, then 1×1 conv + norm and 3×3 conv + norm to ``out_channels``."""
    layers, width = _resample(channels, scale, norm)
    return nn.Sequential(
        *layers, _conv(width, out_channels, 1, norm), _conv(out_channels, out_channels, 3, norm)
    )
