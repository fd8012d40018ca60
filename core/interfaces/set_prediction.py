"""Set-prediction (query-based) roles: DETR, Deformable DETR and their relatives.

A set-prediction detector decodes a fixed set of Q learned queries into Q (class, box) pairs and
is trained with a one-to-one assignment of queries to ground-truth boxes; it needs no anchors
and no NMS. The ``set_prediction`` skeleton calls these roles:

- ``PositionalEncoding`` (``positional_encoding``): padding mask → position embeddings.
- ``SetTransformer`` (``set_transformer``): projected feature levels + masks + positions →
  decoder states of every layer (and the references each layer's boxes are relative to).
- ``SetHead`` (``set_head``): decoder states → class logits and boxes of every layer.
- the matcher (``Matcher``): ``anchors`` are the predicted boxes, ``predictions`` one layer's
  ``logits`` and ``boxes``; ``matched [B,Q]`` holds each query's gt index or -1.
- ``SetLoss`` (``set_loss``): every layer's predictions and assignment → ``loss_*`` terms.
- ``SetPostprocessor`` (``set_postprocessor``): last layer → detections (top-k, no NMS).

Coordinates: boxes a set head predicts are ``cxcywh`` in 0..1 of each image's own size (the
unpadded ``(h, w)`` it has in the batch tensor), as DETR's; the ``GroundTruth`` the skeleton
gives the matcher and the loss is normalised the same way (xyxy in 0..1). Class columns:
``logits [..,Q,C+1]`` with column 0 the no-object class (softmax scoring; the background column
of the dense detectors, where DETR puts it last) or ``[..,Q,C]`` (sigmoid scoring), columns in
label order 1..C either way; each component declares which (``background_column``) and the
skeleton refuses a head, matcher, loss and postprocessor that disagree.

Notation: B images, Q queries, D hidden size, L decoder layers, C classes (no background).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import attrs
import torch
from torch import nn

from .matching import Assignment, GroundTruth
from .prediction import Head, Loss, Postprocessor

Tensor = torch.Tensor


@attrs.frozen
class SetDecoding:
    """What a ``SetTransformer`` returns.

    ``hidden`` float ``[L,B,Q,D]``: the decoder state after every layer (normalised as the
    model's heads expect them). ``references`` float ``[L,B,Q,2]`` or ``[L,B,Q,4]`` in 0..1:
    the point (cx, cy) or box (cxcywh) each layer's box prediction refines, or None when boxes
    are predicted from scratch (DETR). ``extra``: optional named outputs a matching loss reads
    (e.g. the two-stage proposals of the encoder).
    """

    hidden: Tensor
    references: Tensor | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)


BoxRefiner = Callable[[int, Tensor, Tensor | None], Tensor]
"""``refine(layer, hidden [B,Q,D], reference [B,Q,2|4] | None) -> boxes [B,Q,4]`` cxcywh in 0..1:
a head's box branch for one decoder layer, which a transformer with iterative box refinement
calls to make the next layer's reference."""


class PositionalEncoding(nn.Module):
    """Position embeddings of one feature map.

    Injected: ``dim`` (D). ``forward(mask)``: bool ``[B,h,w]``, True at padding. Returns float
    ``[B,D,h,w]``.
    """

    role: ClassVar[str] = "positional_encoding"

    def forward(self, mask: Tensor) -> Tensor:
        raise NotImplementedError


class SetTransformer(nn.Module):
    """Encoder over the feature levels and decoder over the queries.

    Injected: ``num_queries`` (Q), ``num_levels`` (the feature levels it receives). Declares
    ``hidden_dim`` (D), the width the skeleton projects features to and the head reads,
    ``num_decoder_layers`` (L) and ``uses_refiner`` (whether it calls the head's refiner).
    ``forward(features, masks, positions, refine=None)``: ``features`` a list (fine → coarse)
    of float ``[B,D,h_l,w_l]`` projected maps, ``masks`` bool ``[B,h_l,w_l]`` (True at
    padding), ``positions`` float ``[B,D,h_l,w_l]``; ``refine`` the head's ``BoxRefiner`` for
    transformers that refine boxes layer by layer (ignored by those that do not). Returns a
    ``SetDecoding``.
    """

    role: ClassVar[str] = "set_transformer"
    hidden_dim: int
    num_decoder_layers: int
    uses_refiner: bool = False

    def forward(
        self,
        features: list[Tensor],
        masks: list[Tensor],
        positions: list[Tensor],
        refine: BoxRefiner | None = None,
    ) -> SetDecoding:
        raise NotImplementedError


class SetHead(Head):
    """Class and box predictions from every decoder layer's state.

    Injected: ``hidden_dim`` (D), ``num_classes`` (C), ``num_layers`` (L). ``forward(decoding:
    SetDecoding)`` returns ``logits [L,B,Q,K]`` (K = C+1 with column 0 no-object, or C) and
    ``boxes [L,B,Q,4]`` cxcywh in 0..1. ``refiner()``: the ``BoxRefiner`` of its box branch.
    """

    role: ClassVar[str] = "set_head"

    def forward(self, decoding: SetDecoding) -> dict[str, Tensor]:  # type: ignore[override]
        raise NotImplementedError

    def refiner(self) -> BoxRefiner:
        raise NotImplementedError


class SetLoss(Loss):
    """The set criterion: classification and box terms of every decoder layer.

    ``forward(layers, assignments, gt)``: ``layers`` a list of per-layer dicts (``logits
    [B,Q,K]``, ``boxes [B,Q,4]`` cxcywh 0..1), the last layer last; ``assignments`` the
    matcher's ``Assignment`` for each (``matched [B,Q]``: gt index or -1); ``gt`` the normalised
    ``GroundTruth`` (xyxy 0..1). Returns scalar ``loss_*`` terms (auxiliary layers' terms
    named with a ``_d{layer}`` suffix), finite when an image has no boxes.
    """

    role: ClassVar[str] = "set_loss"

    def forward(
        self, layers: list[dict[str, Tensor]], assignments: list[Assignment], gt: GroundTruth
    ) -> dict[str, Tensor]:
        raise NotImplementedError


class SetPostprocessor(Postprocessor):
    """The last decoder layer's predictions → detections, without NMS.

    ``__call__(predictions, image_sizes)``: ``logits [B,Q,K]``, ``boxes [B,Q,4]`` cxcywh 0..1;
    ``image_sizes`` the ``(h, w)`` of each image in the batch tensor. Returns B dicts with
    ``boxes [K,4]`` xyxy in batch-tensor pixels, ``scores [K]``, ``labels [K]`` int64 in 1..C.
    """

    role: ClassVar[str] = "set_postprocessor"

    def __call__(  # type: ignore[override]
        self, predictions: dict[str, Tensor], image_sizes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        raise NotImplementedError
