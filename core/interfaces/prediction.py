"""Heads, RoI extraction, post-processing and losses."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn


class Head(nn.Module):
    """Features → named prediction tensors.

    ``forward(features)``: ``dict[str, Tensor]`` fine → coarse (or pooled RoI features
    ``[R,C,h,w]`` for RoI heads). Returns ``dict[str, Tensor]``; dense detection heads return
    ``cls_logits [B,A,C+1]`` and ``bbox_deltas [B,A,4]`` flattened in the anchor
    generator's order. Sizes itself from injected ``in_channels`` (from ``feature_info``).
    """

    def forward(self, features: Any) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class RoIExtractor(nn.Module):
    """Features + boxes per image → pooled region features.

    ``forward(features, boxes, image_sizes)``: ``features`` dict fine → coarse, ``boxes`` a list
    of B float ``[R_i,4]`` xyxy tensors in input pixels, ``image_sizes`` a list of ``(H, W)``.
    Returns ``[sum R_i, C, h, w]`` in the order of the concatenated boxes; ``[0, C, h, w]`` for
    no boxes.
    """

    def forward(
        self,
        features: dict[str, torch.Tensor],
        boxes: list[torch.Tensor],
        image_sizes: list[tuple[int, int]],
    ) -> torch.Tensor:
        raise NotImplementedError


class Postprocessor:
    """Raw predictions → one result dict per image.

    Each role states its one call (``DensePostprocessor``, ``ProposalGenerator``,
    ``RCNNPostprocessor``, ``MaskPostprocessor``); the box roles share the shape
    ``__call__(predictions, anchors, image_sizes)``: head outputs, the ``Anchors`` (anchors or
    proposals) they refer to, and the ``(h, w)`` each image has in the batch tensor, decoding with
    the ``box_coder`` the skeleton injects at build time. They return B dicts with
    ``boxes [K,4]`` xyxy (batch-tensor pixels; the model rescales to the original size),
    ``scores [K]`` float, ``labels [K]`` int64 in 1..C; K may be 0.

    ``kit_box_coder``: the spec of the registered coder a component is designed for; the
    conformance kit injects it (the model always injects its own).
    """

    kit_box_coder: ClassVar[dict[str, Any]] = {"type": "delta_xywh"}

    def __call__(self, *args: Any, **kwargs: Any) -> list[dict]:
        raise NotImplementedError


class Loss(nn.Module):
    """Predictions + targets → ``dict[str, Tensor]`` of scalar ``loss_*`` terms.

    The base of every loss; it declares no ``forward`` on purpose: a loss implements the role
    interface of the slot it fills (``RPNLoss``, ``RoIBoxLoss``, ``MaskLoss``, the dense loss,
    ...), whose ``forward`` states its arguments. Every term is finite when an image has no
    ground-truth boxes.
    """
