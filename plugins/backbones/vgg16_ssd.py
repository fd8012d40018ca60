"""``vgg16_ssd``: the SSD300/512 VGG-16 feature extractor, module for module torchvision's.

Same layers and parameter names as ``torchvision.models.detection.ssd.SSDFeatureExtractorVGG``
(``features.*``, ``scale_weight``, ``extra.*``), so a torchvision SSD state dict converts by
renaming ``backbone.`` prefixes only. The VGG-16 layers come from torchvision's VGG definition
(``torchvision.models.vgg.make_layers`` with configuration "D").
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from anchorage.core.errors import CheckpointError
from anchorage.core.interfaces import Backbone, FeatureSpec
from anchorage.core.registry import BACKBONES
from anchorage.plugins.backbones.max_pool import SeparableMaxPool2d, use_separable_max_pools


def _xavier(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0.0)


def _extra_block(cin: int, mid: int, cout: int, **conv: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, mid, kernel_size=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(mid, cout, **conv),
        nn.ReLU(inplace=True),
    )


@BACKBONES.register("vgg16_ssd", examples=({"frozen_stages": 2},))
class VGG16SSD(Backbone):
    """VGG-16 with SSD's changes: ceil-mode pool3, L2-normalised conv4_3, atrous fc6/fc7, extras.

    Outputs (SSD300 at 300×300): ``conv4_3`` 512×38², ``fc7`` 1024×19², ``conv8_2`` 512×10²,
    ``conv9_2`` 256×5², ``conv10_2`` 256×3², ``conv11_2`` 256×1² (+ ``conv12_2`` with
    ``highres``, SSD512). ``conv4_3`` is ``scale_weight · normalize(x)`` (L2Norm, init 20).
    ``weights_path``: a local torchvision VGG-16 classifier state dict (``features.*`` keys
    are used). ``frozen_stages``: freeze the first N of VGG's five conv stages (torchvision's
    ``trainable_backbone_layers = 5 - N``).
    """

    example_input_size = (300, 300)  # the extra layers need SSD300's input to reach 1×1

    @attrs.frozen(kw_only=True)
    class Config:
        highres: bool = False
        weights_path: str | None = None
        frozen_stages: int = attrs.field(
            default=0, validator=[attrs.validators.ge(0), attrs.validators.le(5)]
        )

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        vgg = use_separable_max_pools(make_layers(cfgs["D"], batch_norm=False))
        for m in vgg.modules():  # torchvision VGG's own init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
        if cfg.weights_path is not None:
            _load_vgg_features(vgg, cfg.weights_path)
        pools = [i for i, layer in enumerate(vgg) if isinstance(layer, nn.MaxPool2d)]
        stage_starts = [0] + pools[:-1]
        freeze_before = stage_starts[cfg.frozen_stages] if cfg.frozen_stages < 5 else len(vgg)
        for p in vgg[:freeze_before].parameters():
            p.requires_grad_(False)
        vgg[pools[2]].ceil_mode = True
        self.scale_weight = nn.Parameter(torch.ones(512) * 20)
        self.features = nn.Sequential(*vgg[: pools[3]])
        extra = nn.ModuleList(
            [
                _extra_block(1024, 256, 512, kernel_size=3, padding=1, stride=2),
                _extra_block(512, 128, 256, kernel_size=3, padding=1, stride=2),
                _extra_block(256, 128, 256, kernel_size=3),
                _extra_block(256, 128, 256, kernel_size=3),
            ]
        )
        if cfg.highres:
            extra.append(_extra_block(256, 128, 256, kernel_size=4))
        _xavier(extra)
        fc = nn.Sequential(
            SeparableMaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=False),
            nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6),  # fc6, atrous
            nn.ReLU(inplace=True),
            nn.Conv2d(1024, 1024, kernel_size=1),  # fc7
            nn.ReLU(inplace=True),
        )
        _xavier(fc)
        extra.insert(0, nn.Sequential(*vgg[pools[3] : -1], fc))
        self.extra = extra
        names = ["conv4_3", "fc7", "conv8_2", "conv9_2", "conv10_2", "conv11_2", "conv12_2"]
        channels = [512, 1024, 512, 256, 256, 256, 256]
        strides = [8, 16, 32, 64, 128, 256, 512]
        n = len(extra) + 1
        self.feature_info = [FeatureSpec(*f) for f in zip(names[:n], channels[:n], strides[:n])]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x [B,3,H,W]`` → the ``feature_info`` maps (conv4_3 L2-normalised and rescaled)."""
        x = self.features(x)
        out = {self.feature_info[0].name: self.scale_weight.view(1, -1, 1, 1) * F.normalize(x)}
        for spec, block in zip(self.feature_info[1:], self.extra):
            x = block(x)
            out[spec.name] = x
        return out


def _load_vgg_features(vgg: nn.Sequential, path: str) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"vgg16_ssd: weights_path {path}: file not found") from None
    if not isinstance(state, Mapping):
        raise CheckpointError(f"vgg16_ssd: {path}: expected a state dict")
    feats = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    missing, unexpected = vgg.load_state_dict(feats, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"vgg16_ssd: {path} is not a torchvision VGG-16 state dict (features.* keys): "
            f"missing {missing[:6]}, unexpected {unexpected[:6]}"
        )
