"""torchvision ResNets as multi-level backbones (``resnet18/34/50/101``).

The network is torchvision's own ``torchvision.models.resnet*`` (``weights=None``; a local
torchvision state-dict file can be loaded with ``weights_path``), cut at the ``layer*`` outputs
by ``torchvision_features``' ``build_feature_extractor`` (``create_feature_extractor``; channels
and strides measured by a dry run), so parameter names stay torchvision's (``conv1.weight``,
``layer1.0.bn1.weight``, ...). Options follow torchvision's ``resnet_fpn_backbone``: frozen
BatchNorm, ``trainable_layers`` (0..5 counted from ``layer4`` back to ``conv1``), dilation
instead of stride in the last stages (``replace_stride_with_dilation``, as FCN/DeepLab use).

Outputs ``c2..c5`` (``layer1..layer4``), strides 4, 8, 16, 32 (a dilated stage keeps the stride
of the stage before it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import attrs
import torch
import torchvision
from torch import nn

from anchorage.core.errors import CheckpointError
from anchorage.core.interfaces import Backbone
from anchorage.core.registry import BACKBONES
from anchorage.plugins.backbones.frozen_bn import FusedFrozenBatchNorm2d
from anchorage.plugins.backbones.torchvision_features import (
    build_feature_extractor,
    load_torchvision_state,
)

_LAYERS = ("layer1", "layer2", "layer3", "layer4")
_NAMES = {"layer1": "c2", "layer2": "c3", "layer3": "c4", "layer4": "c5"}
_TRAINABLE_ORDER = ("layer4", "layer3", "layer2", "layer1", "conv1")


def _check_layers(_inst: object, _attr: object, value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError("return_layers must name at least one of layer1..layer4")
    unknown = [v for v in value if v not in _LAYERS]
    if unknown:
        raise ValueError(f"return_layers: expected names among {_LAYERS}, got {unknown}")
    if list(value) != sorted(value, key=_LAYERS.index) or len(set(value)) != len(value):
        raise ValueError(f"return_layers must be distinct and fine to coarse, got {value}")


@attrs.frozen(kw_only=True)
class ResNetConfig:
    """Parameters shared by every ResNet depth."""

    norm: Literal["frozen_bn", "bn"] = "frozen_bn"
    trainable_layers: int = attrs.field(
        default=3, validator=[attrs.validators.ge(0), attrs.validators.le(5)]
    )
    replace_stride_with_dilation: tuple[bool, bool, bool] = (False, False, False)
    return_layers: tuple[str, ...] = attrs.field(default=_LAYERS, validator=_check_layers)
    weights_path: str | None = None


class ResNetBackbone(Backbone):
    """A torchvision ResNet cut at its ``layer*`` outputs.

    ``forward(x)``: ``x`` float32 ``[B,3,H,W]`` (normalized). Returns ``dict`` ``c2..c5`` (those
    in ``return_layers``) fine → coarse, ``[B, channels, H/stride, W/stride]`` (rounded up).
    """

    Config = ResNetConfig
    depth: str = ""

    def __init__(self, cfg: ResNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        norm_layer: Callable[..., nn.Module] = (
            FusedFrozenBatchNorm2d if cfg.norm == "frozen_bn" else nn.BatchNorm2d
        )
        net = getattr(torchvision.models, self.depth)(
            weights=None,
            norm_layer=norm_layer,
            replace_stride_with_dilation=list(cfg.replace_stride_with_dilation),
        )
        if cfg.weights_path is not None:
            try:
                load_torchvision_state(net, cfg.weights_path, f"{self.depth} weights_path")
            except RuntimeError as exc:  # shape mismatches come from load_state_dict
                raise CheckpointError(f"{self.depth} weights_path: {exc}") from None
        _freeze(net, cfg.trainable_layers)
        nodes = {layer: _NAMES[layer] for layer in cfg.return_layers}
        self.body, self.feature_info = build_feature_extractor(net, nodes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(self.body(x))


def _freeze(net: nn.Module, trainable_layers: int) -> None:
    """Freeze all but the last ``trainable_layers`` stages (torchvision's convention)."""
    train = list(_TRAINABLE_ORDER[:trainable_layers])
    if trainable_layers == 5:
        train.append("bn1")
    for name, param in net.named_parameters():
        if not any(name.startswith(layer) for layer in train):
            param.requires_grad_(False)


def _register(depth: str, examples: tuple[dict, ...]) -> type[ResNetBackbone]:
    cls = type(
        f"ResNet{depth[6:]}Backbone",
        (ResNetBackbone,),
        {
            "depth": depth,
            "__doc__": f"torchvision {depth} cut at layer1..layer4 (c2..c5).",
            "__module__": __name__,
        },
    )
    return BACKBONES.register(depth, examples=examples)(cls)


ResNet18Backbone = _register("resnet18", ({}, {"norm": "bn", "return_layers": ("layer4",)}))
ResNet34Backbone = _register("resnet34", ({},))
ResNet50Backbone = _register("resnet50", ({},))
ResNet101Backbone = _register("resnet101", ({"trainable_layers": 0},))
