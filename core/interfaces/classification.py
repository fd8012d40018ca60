"""Image classification and single-object localization roles.

The ``classifier`` skeleton runs backbone → ``ClassificationHead`` → ``ClassificationLoss``;
the ``localizer`` adds a ``BoxRegressionHead`` and a ``LocalizationLoss`` (one box per image).

Conventions (the same as detection): labels are int64 in 1..C; class logits are ``[B,C]``
with column ``c - 1`` scoring label ``c`` (no background column: every image shows one of
the C classes). Localization boxes are ``cxcywh`` in 0..1 of the image the model sees (DETR's
normalisation), so a box head and a box loss need no image size.

Notation: B images, C classes, D the channels of the feature map a head reads.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from .prediction import Head, Loss

Tensor = torch.Tensor


class ClassificationHead(Head):
    """Feature map → class logits.

    Injected: ``in_channels`` (D, from the backbone's ``feature_info``), ``num_classes`` (C).
    ``forward(x)``: float ``[B, D, h, w]`` (any h, w ≥ 1). Returns ``{"logits": [B, C]}``;
    column ``c - 1`` scores label ``c``. Pooling (global average, max, ...) is the head's.
    """

    role: ClassVar[str] = "classification_head"

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError


class BoxRegressionHead(Head):
    """Feature map → one box per image.

    Injected: ``in_channels`` (D). ``forward(x)``: float ``[B, D, h, w]``. Returns
    ``{"boxes": [B, 4]}`` ``cxcywh`` in 0..1 of the image the model sees.
    """

    role: ClassVar[str] = "box_regression_head"

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError


class ClassificationLoss(Loss):
    """Image-level classification loss.

    ``forward(logits, labels)``: ``logits`` float ``[B, C]``, ``labels`` int64 ``[B]`` in 1..C
    (0 or -1: the image does not count). Returns scalar ``loss_*`` terms, finite (zero with a
    gradient path) when no image counts or B = 0.
    """

    role: ClassVar[str] = "classification_loss"

    def forward(self, logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError


class LocalizationLoss(Loss):
    """One predicted box per image against its ground-truth box.

    ``forward(boxes, target, valid)``: ``boxes`` float ``[B, 4]`` predicted ``cxcywh`` in 0..1,
    ``target`` float ``[B, 4]`` ground truth ``xyxy`` in 0..1, ``valid`` bool ``[B]`` (False:
    the image has no box; its row is not read). Returns scalar ``loss_*`` terms, finite (zero
    with a gradient path) when no image is valid.
    """

    role: ClassVar[str] = "localization_loss"

    def forward(self, boxes: Tensor, target: Tensor, valid: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError


CLASSIFICATION_ROLES: tuple[type, ...] = (
    ClassificationHead,
    BoxRegressionHead,
    ClassificationLoss,
    LocalizationLoss,
)
"""The classification and localization role interfaces (each has a kit check)."""
