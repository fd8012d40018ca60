"""Neural style transfer losses (Gatys et al.; d2l.ai ch. 14.12): ``content``, ``gram_style``,
``total_variation``.

The feature losses take two dicts keyed by layer name: the synthesized image's features and
the prepared targets (``prepare`` turns the reference image's features into what the loss
compares against, once, before the optimisation loop). Each returns one ``loss_*`` term,
already multiplied by its ``weight``; per-layer weights default to 1.
"""

from __future__ import annotations

import attrs
import torch

from anchorage.core.interfaces import roles
from anchorage.core.registry import LOSSES

Features = dict[str, torch.Tensor]


def gram_matrix(x: torch.Tensor) -> torch.Tensor:
    """Gram matrix of feature maps normalised by c·h·w.

    ``x`` float ``[B, C, H, W]`` → ``[B, C, C]`` with ``G[b] = F Fᵀ / (C·H·W)``, ``F`` the
    ``[C, H·W]`` flattening of ``x[b]`` (as d2l.ai's ``gram``).
    """
    b, c, h, w = x.shape
    flat = x.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def _weighted_sum(terms: dict[str, torch.Tensor], layer_weights: dict[str, float]) -> torch.Tensor:
    if not terms:
        raise ValueError("no layers to compare (the targets dict is empty)")
    return sum(layer_weights.get(name, 1.0) * t for name, t in terms.items())


def _missing(features: Features, targets: Features, what: str) -> None:
    missing = sorted(set(targets) - set(features))
    if missing:
        raise KeyError(f"{what}: features lack layers {missing}; got {sorted(features)}")


@attrs.frozen(kw_only=True)
class FeatureLossConfig:
    """A weight for the term and optional weights per layer name (default 1 each)."""

    weight: float = attrs.field(default=1.0, validator=attrs.validators.ge(0.0))
    layer_weights: dict[str, float] = attrs.field(factory=dict)


@LOSSES.register("content", examples=({}, {"weight": 2.0, "layer_weights": {"a": 0.5}}))
class ContentLoss(roles.StyleLoss):
    """Mean squared error between the synthesized and the content image's features.

    ``prepare(features)`` → detached copies. ``forward(features, targets)``: dicts layer →
    ``[B, C, H, W]`` (same shapes per layer). Returns ``{"loss_content": weight · Σ_l w_l ·
    mean((F_l − T_l)²)}`` over the layers in ``targets``.
    """

    Config = FeatureLossConfig

    def __init__(self, cfg: FeatureLossConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def prepare(self, features: Features) -> Features:
        return {k: v.detach() for k, v in features.items()}

    def forward(self, features: Features, targets: Features) -> dict[str, torch.Tensor]:
        _missing(features, targets, "content loss")
        terms = {k: (features[k] - t).square().mean() for k, t in targets.items()}
        return {"loss_content": self.cfg.weight * _weighted_sum(terms, self.cfg.layer_weights)}


@LOSSES.register("gram_style", examples=({}, {"weight": 1e4, "layer_weights": {"a": 0.2}}))
class GramStyleLoss(roles.StyleLoss):
    """Mean squared error between Gram matrices (normalised by c·h·w) of the features.

    ``prepare(features)`` → detached Gram matrices ``[B, C, C]`` of the style image.
    ``forward(features, targets)``: ``features`` layer → ``[B, C, H, W]``, ``targets`` layer →
    ``[B or 1, C, C]``. Returns ``{"loss_style": weight · Σ_l w_l · mean((G(F_l) − T_l)²)}``.
    Sizes of the style and the synthesized image may differ (Gram matrices are C×C).
    """

    Config = FeatureLossConfig

    def __init__(self, cfg: FeatureLossConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def prepare(self, features: Features) -> Features:
        return {k: gram_matrix(v).detach() for k, v in features.items()}

    def forward(self, features: Features, targets: Features) -> dict[str, torch.Tensor]:
        _missing(features, targets, "style loss")
        terms = {k: (gram_matrix(features[k]) - t).square().mean() for k, t in targets.items()}
        return {"loss_style": self.cfg.weight * _weighted_sum(terms, self.cfg.layer_weights)}


@LOSSES.register("total_variation", examples=({}, {"weight": 10.0}))
class TotalVariationLoss(roles.ImagePriorLoss):
    """Total-variation smoothness prior on an image (d2l.ai's ``tv_loss``).

    ``forward(image)``: float ``[B, C, H, W]``. Returns ``{"loss_tv": weight · ½ (mean|∂y| +
    mean|∂x|)}`` with absolute differences of vertically / horizontally adjacent pixels.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        weight: float = attrs.field(default=1.0, validator=attrs.validators.ge(0.0))

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        dy = (image[:, :, 1:, :] - image[:, :, :-1, :]).abs().mean()
        dx = (image[:, :, :, 1:] - image[:, :, :, :-1]).abs().mean()
        return {"loss_tv": self.cfg.weight * 0.5 * (dy + dx)}
