"""Set-prediction (query-based) roles: DETR, Deformable DETR and their relatives.

A set-prediction detector decodes a fixed set of Q learned queries into Q (class, box) pairs and
is trained with a one-to-one assignment of queries to ground-truth boxes; it needs no anchors
and no NMS. The ``set_prediction`` skeleton calls these roles:

- ``PositionalEncoding`` (``positional_encoding``): padding mask → position embeddings.
- ``SetTransformer`` (``set_transformer``): projected feature levels + masks + positions →
  decoder states of every layer (and the references each layer's boxes are relative to); a
  two-stage one (``uses_proposer``) also returns its encoder proposals' predictions.
- ``SetHead`` (``set_head``): decoder states → class logits and boxes of every layer; its
  ``refiner()`` and ``proposer()`` are the box and class branches a transformer calls inside
  its forward (iterative box refinement, two-stage proposals).
- the matcher (``Matcher``): ``anchors`` are the predicted boxes, ``predictions`` one layer's
  ``logits`` and ``boxes``; ``matched [B,Q]`` holds each query's gt index or -1. A matcher
  may also offer ``match_groups([(anchors, gt, predictions), ...]) -> [Assignment, ...]``:
  several independent problems (each its own Q) in one call; the skeleton uses it to match the
  decoder layers and the encoder proposals together (the Hungarian matcher then copies all
  their costs to the host at once), and calls a matcher without it once per problem.
- ``SetLoss`` (``set_loss``): every layer's predictions and assignment (and the encoder
  proposals', ``EncoderMatch``) → ``loss_*`` terms.
- ``SetPostprocessor`` (``set_postprocessor``): last layer → detections (top-k, no NMS).

Coordinates: boxes a set head predicts are ``cxcywh`` in 0..1 of each image's own size (the
unpadded ``(h, w)`` it has in the batch tensor), as DETR's; the ``GroundTruth`` the skeleton
gives the matcher and the loss is normalised the same way (xyxy in 0..1). Class columns:
``logits [..,Q,C+1]`` with column 0 the no-object class (softmax scoring; the background column
of the dense detectors, where DETR puts it last) or ``[..,Q,C]`` (sigmoid scoring), columns in
label order 1..C either way; each component declares which (``background_column``) and the
skeleton refuses a head, matcher, loss and postprocessor that disagree.

Query groups (Group DETR, Chen et al. 2023): a transformer may train G groups of Q queries
(``SetDecoding.groups``; ``query_groups`` on the shipped transformers). In train mode its
decoding holds all G·Q queries, group-major along the query axis (group g is queries
``g·Q .. g·Q+Q-1``), each group decoded on its own (decoder self-attention only within the
group, a block-diagonal mask); the head predicts every query; the skeleton folds the groups
into the batch (``[L,B,G·Q,..]`` → ``[L,B·G,Q,..]``, image-major: row ``b·G + g``) and repeats
each image's gt per group, so the matcher and the loss see B·G one-to-one problems in one
call, each gt then has G positives, and the loss (normalised by the B·G images' gt boxes) is
the mean of the groups' losses. In eval mode a transformer returns group 0 only (Q queries,
``groups`` 1): inference costs what a one-group model's does.

Notation: B images, Q queries, D hidden size, L decoder layers, C classes (no background),
S encoder positions (the pixels of every feature level, flattened level by level).
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
    are predicted from scratch (DETR). ``encoder_logits [B,S,K]`` and ``encoder_boxes
    [B,S,4]`` (cxcywh 0..1): a two-stage transformer's per-pixel proposals as its head's
    ``proposer()`` scored them (None otherwise); the skeleton matches them to class-agnostic
    gt and the loss adds their terms. ``extra``: optional named outputs of other designs.

    ``groups`` (G, at least 1): the query groups the decoding holds. With G > 1 (train mode
    only) the query axis of ``hidden`` and ``references`` is G·Q, group-major (module
    docstring); in eval mode it is always 1 (Q queries, group 0).
    """

    hidden: Tensor
    references: Tensor | None = None
    encoder_logits: Tensor | None = None
    encoder_boxes: Tensor | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)
    groups: int = 1


@attrs.frozen
class EncoderMatch:
    """The two-stage encoder proposals a ``SetLoss`` scores beside the decoder layers.

    ``predictions``: ``logits [B,S,K]`` and ``boxes [B,S,4]`` cxcywh 0..1 (``SetDecoding``'s
    ``encoder_logits`` / ``encoder_boxes``); ``assignment``: the matcher's, ``matched [B,S]``
    (gt index or -1); ``gt``: the normalised gt made class-agnostic (every valid label 1,
    ``GroundTruth.class_agnostic``), what the proposals were matched against.
    """

    predictions: dict[str, Tensor]
    assignment: Assignment
    gt: GroundTruth


BoxRefiner = Callable[[int, Tensor, Tensor | None], Tensor]
"""``refine(layer, hidden [B,Q,D], reference [B,Q,2|4] | None) -> boxes [B,Q,4]`` cxcywh in 0..1:
a head's box branch for one decoder layer, which a transformer with iterative box refinement
calls to make the next layer's reference."""

Proposer = Callable[[Tensor, Tensor], dict[str, Tensor]]
"""``propose(query [B,S,D], proposals [B,S,4]) -> {"logits" [B,S,K], "boxes" [B,S,4],
"scores" [B,S]}``: a head's class and box branches for a two-stage transformer's encoder
proposals (their own branches, not a decoder layer's). ``proposals`` cxcywh in 0..1 of each
image (as references are), one per encoder position (values at padding are arbitrary: the
transformer masks them); ``boxes`` the refined proposals
``sigmoid(delta + inverse_sigmoid(proposals))``, cxcywh 0..1; ``scores`` the class-agnostic
objectness that ranks them (for ``detr_head``: label 1's logit with sigmoid scoring, its
log-probability with softmax), higher first."""


def query_group_mask(
    groups: int, queries: int, device: torch.device | str | None = None
) -> Tensor | None:
    """The decoder self-attention mask of G query groups of Q queries each (Group DETR):
    bool ``[G·Q,G·Q]``, True where a query may not attend (the key is another group's), so
    each group decodes as if alone; None for one group (no mask: today's attention). The
    ``attn_mask`` convention of ``nn.MultiheadAttention`` (a boolean mask, True = masked)."""
    if groups == 1:
        return None
    group = torch.arange(groups * queries, device=device) // queries
    return group[:, None] != group[None, :]


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
    ``num_decoder_layers`` (L), ``uses_refiner`` (whether it calls the head's refiner) and
    ``uses_proposer`` (two-stage: whether it calls the head's proposer).
    ``forward(features, masks, positions, refine=None, propose=None)``: ``features`` a list
    (fine → coarse) of float ``[B,D,h_l,w_l]`` projected maps, ``masks`` bool ``[B,h_l,w_l]``
    (True at padding), ``positions`` float ``[B,D,h_l,w_l]``; ``refine`` the head's
    ``BoxRefiner`` for transformers that refine boxes layer by layer, ``propose`` the head's
    ``Proposer`` for two-stage ones (each ignored by those that do not use it; the skeleton
    passes ``propose`` only to a transformer with ``uses_proposer``). Returns a
    ``SetDecoding``, with ``encoder_logits`` / ``encoder_boxes`` when two-stage.

    Query groups: a transformer training G > 1 groups of Q queries (Group DETR) returns, in
    train mode, ``SetDecoding(groups=G)`` with ``hidden [L,B,G·Q,D]`` (and references
    ``[L,B,G·Q,..]``) group-major, no query attending to another group's; in eval mode
    group 0 alone, ``hidden [L,B,Q,D]`` and ``groups`` 1 (the module docstring).
    """

    role: ClassVar[str] = "set_transformer"
    hidden_dim: int
    num_decoder_layers: int
    uses_refiner: bool = False
    uses_proposer: bool = False

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

    Injected: ``hidden_dim`` (D), ``num_classes`` (C), ``num_layers`` (L), and
    ``encoder_proposals: true`` only for a two-stage transformer (a head without that field
    cannot serve one). ``forward(decoding: SetDecoding)`` returns ``logits [L,B,Q,K]`` (K = C+1
    with column 0 no-object, or C) and ``boxes [L,B,Q,4]`` cxcywh in 0..1, Q the decoding's
    query axis (G·Q in train mode with query groups: a head predicts every query alike).
    ``refiner()``: the ``BoxRefiner`` of its box branch; ``proposer()``: the ``Proposer`` of its
    encoder-proposal branches (built with ``encoder_proposals``).
    """

    role: ClassVar[str] = "set_head"

    def forward(self, decoding: SetDecoding) -> dict[str, Tensor]:  # type: ignore[override]
        raise NotImplementedError

    def refiner(self) -> BoxRefiner:
        raise NotImplementedError

    def proposer(self) -> Proposer:
        raise NotImplementedError


class SetLoss(Loss):
    """The set criterion: classification and box terms of every decoder layer.

    ``forward(layers, assignments, gt, encoder=None)``: ``layers`` a list of per-layer dicts
    (``logits [B,Q,K]``, ``boxes [B,Q,4]`` cxcywh 0..1), the last layer last; ``assignments`` the
    matcher's ``Assignment`` for each (``matched [B,Q]``: gt index or -1); ``gt`` the normalised
    ``GroundTruth`` (xyxy 0..1); ``encoder`` a two-stage model's ``EncoderMatch`` or None.
    Returns scalar ``loss_*`` terms (auxiliary layers' terms named with a ``_d{layer}``
    suffix, the encoder proposals' with ``_enc``), finite when an image has no boxes.
    """

    role: ClassVar[str] = "set_loss"

    def forward(
        self,
        layers: list[dict[str, Tensor]],
        assignments: list[Assignment],
        gt: GroundTruth,
        encoder: EncoderMatch | None = None,
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
