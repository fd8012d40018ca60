"""Feature extractors: Backbone and Neck."""

from __future__ import annotations

import torch
from attrs import frozen
from torch import nn


@frozen
class FeatureSpec:
    """One output map of a backbone or neck: its dict key, channels and stride in pixels."""

    name: str
    channels: int
    stride: int


class Backbone(nn.Module):
    """Image batch → multi-level features.

    ``forward(x)``: ``x`` float32 ``[B,3,H,W]`` (normalized by the data pipeline) on any device;
    returns ``dict[str, Tensor]`` ordered fine → coarse, one entry per ``feature_info`` item,
    each ``[B, channels, ~H/stride, ~W/stride]`` on the input's device and dtype. Works for
    B = 1 and for any H, W the strides allow. Subclasses set ``self.feature_info`` in
    ``__init__``; heads and necks size themselves from it.
    """

    feature_info: list[FeatureSpec]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class Neck(nn.Module):
    """Features → features (e.g. FPN).

    ``forward(features)`` takes and returns ``dict[str, Tensor]`` fine → coarse. The input
    levels are described by the ``in_feature_info`` it was built with; the outputs by its own
    ``feature_info`` (same contract as Backbone's).
    """

    feature_info: list[FeatureSpec]

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError
