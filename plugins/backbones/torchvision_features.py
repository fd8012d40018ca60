"""``torchvision_features``: any torchvision classification network as a multi-level backbone.

The network is built by name from ``torchvision.models`` (``weights=None``; a local
torchvision-format state-dict file can be loaded with ``weights_path``) and cut at named graph
nodes with ``torchvision.models.feature_extraction.create_feature_extractor``, so parameter
names stay torchvision's (``body.layer1.0.conv1.weight``, ...). ``feature_info`` (channels and
stride per level) is measured by a dry run. Reusable pieces for other backbones:
``build_feature_extractor``, ``freeze_batchnorm`` and ``freeze_prefixes``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import attrs
import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from anchorage.core.errors import CheckpointError, SpecError
from anchorage.core.interfaces import Backbone, FeatureSpec
from anchorage.core.registry import BACKBONES
from anchorage.plugins.backbones.frozen_bn import FusedFrozenBatchNorm2d
from anchorage.plugins.backbones.max_pool import use_separable_max_pools

PROBE_SIZE = 256
"""Side of the square dry-run input used to measure channels and strides."""

DEFAULT_RETURN_NODES: dict[str, dict[str, str]] = {
    "resnet": {"layer1": "c2", "layer2": "c3", "layer3": "c4", "layer4": "c5"},
    "resnext": {"layer1": "c2", "layer2": "c3", "layer3": "c4", "layer4": "c5"},
    "wide_resnet": {"layer1": "c2", "layer2": "c3", "layer3": "c4", "layer4": "c5"},
    "alexnet": {"features.4": "c3", "features.11": "c4", "features.12": "c5"},
    "googlenet": {"inception3b": "c3", "inception4e": "c4", "inception5b": "c5"},
    "densenet": {"features.denseblock2": "c3", "features.denseblock3": "c4", "relu": "c5"},
}
"""Known node tables by model family (the name without its depth suffix). VGG's depend on the
depth (``vgg_return_nodes``): the last three max pools (strides 8, 16, 32)."""


def vgg_return_nodes(net: nn.Module) -> dict[str, str]:
    """``features.<i>`` of the last three ``MaxPool2d`` of a torchvision VGG → ``c3, c4, c5``."""
    pools = [f"features.{i}" for i, m in enumerate(net.features) if isinstance(m, nn.MaxPool2d)]
    return dict(zip(pools[-3:], ("c3", "c4", "c5")))


STAGE_PREFIXES: dict[str, tuple[tuple[str, ...], ...]] = {
    "resnet": (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",)),
}
"""Module-name prefixes of each stage, stem first, for ``frozen_stages``."""
STAGE_PREFIXES["resnext"] = STAGE_PREFIXES["wide_resnet"] = STAGE_PREFIXES["resnet"]


def build_feature_extractor(
    model: nn.Module, return_nodes: Mapping[str, str], probe_size: int = PROBE_SIZE
) -> tuple[nn.Module, list[FeatureSpec]]:
    """Cut ``model`` at ``return_nodes`` (graph node name → output name).

    Returns the ``create_feature_extractor`` module (its ``forward(x [B,3,H,W])`` gives
    ``dict[str, Tensor]`` keyed by the output names, in ``return_nodes`` order; its max pools
    are ``SeparableMaxPool2d``, swapped in after tracing as the graph calls them by name) and a
    ``feature_info`` measured with a ``[1,3,probe_size,probe_size]`` dry run (stride rounded
    to a power of two). Unknown node names raise ``SpecError`` listing valid ones.
    """
    try:
        body = create_feature_extractor(model, return_nodes=dict(return_nodes))
    except ValueError as exc:
        raise SpecError(f"torchvision_features: return_nodes {dict(return_nodes)}: {exc}") from None
    use_separable_max_pools(body)
    was_training = body.training
    body.eval()
    with torch.no_grad():
        out = body(torch.zeros(1, 3, probe_size, probe_size))
    body.train(was_training)
    info = []
    for name in return_nodes.values():
        t = out[name]
        if t.dim() != 4:
            raise SpecError(
                f"torchvision_features: node for {name!r} gives shape {tuple(t.shape)}, "
                "expected a feature map [B,C,h,w]"
            )
        stride = 2 ** round(math.log2(probe_size / t.shape[-1]))
        info.append(FeatureSpec(name=name, channels=int(t.shape[1]), stride=int(stride)))
    return body, info


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` below ``module`` by ``FusedFrozenBatchNorm2d`` (same stats).

    Returns the (possibly new) module; ``module`` itself is replaced when it is a BatchNorm2d.
    """
    if isinstance(module, nn.BatchNorm2d):
        frozen = FusedFrozenBatchNorm2d(module.num_features, eps=module.eps)
        with torch.no_grad():
            if module.affine:
                frozen.weight.copy_(module.weight)
                frozen.bias.copy_(module.bias)
            if module.track_running_stats:
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        new = freeze_batchnorm(child)
        if new is not child:
            setattr(module, name, new)
    return module


def freeze_prefixes(module: nn.Module, prefixes: tuple[str, ...]) -> None:
    """``requires_grad_(False)`` on parameters whose name starts with one of ``prefixes``.

    A prefix matches whole dotted components (``layer1`` matches ``layer1.0.conv1.weight``,
    not ``layer10``). Unknown prefixes raise ``SpecError``.
    """
    modules = {n for n, _ in module.named_modules()} | {n for n, _ in module.named_parameters()}
    for prefix in prefixes:
        if prefix not in modules:
            raise SpecError(f"frozen: no module or parameter named {prefix!r}")
    for name, param in module.named_parameters():
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            param.requires_grad_(False)


def load_torchvision_state(model: nn.Module, path: str, what: str) -> None:
    """Load a torchvision-format state-dict file (``weights_only=True``) strictly into ``model``."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"{what}: weights_path {path}: file not found")
    state = torch.load(file, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{what}: {path} does not fit: missing {sorted(missing)[:8]}, "
            f"unexpected {sorted(unexpected)[:8]}"
        )


def _family(model_name: str) -> str:
    """``resnet50`` → ``resnet``, ``resnext50_32x4d`` → ``resnext``, ``wide_resnet50_2`` → ..."""
    if model_name.startswith("wide_resnet"):
        return "wide_resnet"
    return model_name.split("_")[0].rstrip("0123456789")


def _check_model_name(_inst: object, _attr: attrs.Attribute, value: str) -> None:
    names = torchvision.models.list_models(module=torchvision.models)
    if value not in names:
        close = [n for n in names if n.startswith(value[:4])][:6]
        raise ValueError(
            f"unknown torchvision classification model {value!r}"
            + (f"; close names: {', '.join(close)}" if close else "")
        )


@BACKBONES.register(
    "torchvision_features",
    examples=(
        {"model": "resnet18", "frozen_stages": 1, "norm": "frozen_bn"},
        {"model": "mobilenet_v3_small", "return_nodes": {"features.3": "c3", "features.8": "c4"}},
    ),
)
class TorchvisionFeatures(Backbone):
    """A torchvision classification network cut at named nodes (fine → coarse outputs).

    ``model``: a name from ``torchvision.models.list_models(module=torchvision.models)``.
    ``return_nodes``: graph node → output name (see
    ``torchvision.models.feature_extraction.get_graph_node_names``); defaults exist for
    ResNet-like families (``layer1..4`` → ``c2..c5``) and for AlexNet, VGG, GoogLeNet and
    DenseNet (their last three stages, strides 8, 16, 32, as ``c3..c5``). ``weights_path``: a local
    torchvision-format state dict of the whole classifier. ``norm: frozen_bn`` swaps every
    BatchNorm2d for ``FrozenBatchNorm2d``; ``frozen_stages`` freezes the first N stages (stem
    first; known for ResNet-like families); ``frozen`` freezes parameters by name prefix.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        model: str = attrs.field(validator=_check_model_name)
        return_nodes: dict[str, str] | None = None
        weights_path: str | None = None
        norm: Literal["bn", "frozen_bn"] = "bn"
        frozen_stages: int = attrs.field(default=0, validator=attrs.validators.ge(0))
        frozen: tuple[str, ...] = ()

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        family = _family(cfg.model)
        nodes = cfg.return_nodes or DEFAULT_RETURN_NODES.get(family)
        if not nodes and family != "vgg":
            raise SpecError(
                f"torchvision_features: no default return_nodes for {cfg.model!r}; set "
                "return_nodes (node name → output name, see get_graph_node_names)"
            )
        extra = {"aux_logits": False, "init_weights": False} if family == "googlenet" else {}
        net = torchvision.models.get_model(cfg.model, weights=None, **extra)
        nodes = nodes or vgg_return_nodes(net)
        if cfg.weights_path is not None:
            load_torchvision_state(net, cfg.weights_path, f"torchvision_features {cfg.model}")
        if cfg.norm == "frozen_bn":
            net = freeze_batchnorm(net)
        self.body, self.feature_info = build_feature_extractor(net, nodes)
        prefixes = list(cfg.frozen)
        if cfg.frozen_stages:
            stages = STAGE_PREFIXES.get(family)
            if stages is None or cfg.frozen_stages > len(stages):
                raise SpecError(
                    f"torchvision_features: frozen_stages={cfg.frozen_stages} is not known for "
                    f"{cfg.model!r} (known: {sorted(STAGE_PREFIXES)} up to 5); use 'frozen'"
                )
            prefixes += [p for stage in stages[: cfg.frozen_stages] for p in stage]
        freeze_prefixes(self.body, tuple(prefixes))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x [B,3,H,W]`` → ``{name: [B,C,H/stride,W/stride]}`` in ``feature_info`` order."""
        out = self.body(x)
        return {f.name: out[f.name] for f in self.feature_info}
