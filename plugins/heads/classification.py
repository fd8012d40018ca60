"""Classification and localization heads: ``linear_head`` and ``box_regression_head``.

Both read the one feature map ``[B, D, h, w]`` their model picks from the backbone (D
injected from its ``feature_info``) and pool it first (``pool``: ``avg`` as ResNet, ``max``, or
``avgmax``, their mean; the class head globally, the box head to a small grid), so they work
at any input size.

- ``linear_head``: pool → dropout → ``Linear(D, C)`` (optionally a hidden ReLU layer first,
  AlexNet/VGG's classifier). ``reset_parameters()`` re-initialises it; fine-tuning
  re-initialises the output layer by leaving it out of ``train.load_from``
  (``train.load_exclude: ["^head\\."]``).
- ``box_regression_head``: pool to a ``grid`` (default 3×3, adaptive) and flatten → MLP → 4
  numbers through a sigmoid: ``cxcywh`` in 0..1. A global pool (``grid: null``) keeps what is
  in the map but not where: a convolutional trunk is translation-equivariant, so the box could
  only be guessed from padding effects; the grid keeps the coarse position for the MLP.
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from anchorage.core import injected
from anchorage.core.interfaces.classification import BoxRegressionHead, ClassificationHead
from anchorage.core.registry import HEADS

Pool = Literal["avg", "max", "avgmax"]


def global_pool(x: torch.Tensor, pool: Pool) -> torch.Tensor:
    """``[B, D, h, w]`` → ``[B, D]``: global average, max, or the mean of both."""
    if pool == "avg":
        return x.mean((-2, -1))
    if pool == "max":
        return x.amax((-2, -1))
    return 0.5 * (x.mean((-2, -1)) + x.amax((-2, -1)))


def grid_pool(x: torch.Tensor, pool: Pool, grid: tuple[int, int]) -> torch.Tensor:
    """``[B, D, h, w]`` → ``[B, D * gh * gw]``: adaptive pooling to the ``grid`` (gh, gw),
    flattened (channel-major), so the result keeps where in the map each feature was."""
    if pool == "avg":
        y = F.adaptive_avg_pool2d(x, grid)
    elif pool == "max":
        y = F.adaptive_max_pool2d(x, grid)
    else:
        y = 0.5 * (F.adaptive_avg_pool2d(x, grid) + F.adaptive_max_pool2d(x, grid))
    return y.flatten(1)


def _grid(_inst: object, attribute: attrs.Attribute, value: tuple[int, int] | None) -> None:
    if value is not None and (len(value) != 2 or min(value) < 1):
        raise ValueError(f"{attribute.name} must be two positive integers (gh, gw), got {value}")


def _mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    """Linear layers between ``sizes`` with ReLU (and dropout) between them, none after the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


_prob = [attrs.validators.ge(0.0), attrs.validators.lt(1.0)]


@HEADS.register(
    "linear_head",
    examples=(
        {"in_channels": 8, "num_classes": 3},
        {"in_channels": 8, "num_classes": 1, "pool": "avgmax", "hidden": (16,), "dropout": 0.5},
    ),
)
class LinearHead(ClassificationHead):
    """Global pooling, dropout and a linear layer to C class logits (see the module docstring).

    ``forward(x [B,D,h,w])`` → ``{"logits": [B,C]}``.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        in_channels: int = injected()
        num_classes: int = injected()
        pool: Pool = "avg"
        hidden: tuple[int, ...] = ()
        dropout: float = attrs.field(default=0.0, validator=_prob)

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.pool = cfg.pool
        self.mlp = _mlp([cfg.in_channels, *cfg.hidden, cfg.num_classes], cfg.dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Fresh weights (torch's default Linear init; the output layer's bias zero)."""
        linears = [m for m in self.mlp if isinstance(m, nn.Linear)]
        for layer in linears:
            layer.reset_parameters()
        nn.init.zeros_(linears[-1].bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.mlp(global_pool(x, self.pool))}


@HEADS.register(
    "box_regression_head",
    examples=(
        {"in_channels": 8},
        {"in_channels": 8, "hidden": ()},
        {"in_channels": 8, "grid": None},
    ),
)
class BoxHead(BoxRegressionHead):
    """Pooling to a ``grid`` (or globally) and an MLP to one ``cxcywh`` box in 0..1 (sigmoid).

    ``forward(x [B,D,h,w])`` → ``{"boxes": [B,4]}``. ``grid`` (gh, gw), default (3, 3):
    adaptive pooling (``pool``) to that grid, flattened, so the MLP knows where the object is
    (maps smaller than the grid are repeated, any size works); ``grid: null`` pools globally,
    which keeps no position (see the module docstring). The last layer starts at zero, so the
    first prediction is the centred half-size box (sigmoid(0) = 0.5).
    """

    @attrs.frozen(kw_only=True)
    class Config:
        in_channels: int = injected()
        pool: Pool = "avg"
        grid: tuple[int, int] | None = attrs.field(default=(3, 3), validator=_grid)
        hidden: tuple[int, ...] = (256,)
        dropout: float = attrs.field(default=0.0, validator=_prob)

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.pool = cfg.pool
        self.grid = cfg.grid
        cells = 1 if cfg.grid is None else cfg.grid[0] * cfg.grid[1]
        self.mlp = _mlp([cfg.in_channels * cells, *cfg.hidden, 4], cfg.dropout)
        last = [m for m in self.mlp if isinstance(m, nn.Linear)][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = (
            global_pool(x, self.pool) if self.grid is None else grid_pool(x, self.pool, self.grid)
        )
        return {"boxes": F.sigmoid(self.mlp(pooled))}


@HEADS.register("nin_head", examples=({"in_channels": 8, "num_classes": 3},))
class NiNHead(ClassificationHead):
    """NiN's classifier without dense layers: 3×3 max pool (stride 2, padded by 1), dropout,
    a NiN block to C channels, global average pooling. ``forward(x [B,D,h,w])`` →
    ``{"logits": [B,C]}`` (the block's last ReLU is dropped: logits may be negative)."""

    @attrs.frozen(kw_only=True)
    class Config:
        in_channels: int = injected()
        num_classes: int = injected()
        dropout: float = attrs.field(default=0.5, validator=_prob)

    def __init__(self, cfg: Config) -> None:
        from anchorage.plugins.backbones.max_pool import SeparableMaxPool2d
        from anchorage.plugins.backbones.nin import nin_block

        super().__init__()
        block = nin_block(cfg.in_channels, cfg.num_classes, 3, 1, 1)[:-1]
        self.body = nn.Sequential(
            SeparableMaxPool2d(3, 2, padding=1), nn.Dropout(cfg.dropout), block
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.body(x).mean((-2, -1))}
