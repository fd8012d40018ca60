"""``deformable_detr_transformer``: Deformable DETR's encoder and decoder (Zhu et al. 2021).

The encoder runs multi-scale deformable self-attention over all feature levels (each pixel
samples around itself on every level); the decoder runs self-attention over the Q queries,
then deformable cross-attention around each query's reference point. Layers are post-norm
and the decoder has no final norm, as in the paper; numbers match transformers'
``DeformableDetrModel`` given the same weights (``convert.transformer_state_from_transformers``).

Layers are registry components (``transformer_layer``): the transformer's
``encoder_layer`` / ``decoder_layer`` specs are built once per layer with these injected
parameters, so a layer of another design declares the same six and is swapped in with one
spec line (``encoder_layer: {type: my_layer}``):

- ``hidden_dim`` (D), ``num_heads``, ``num_levels`` (L feature levels), ``num_points``
  (sampled points per head and level), ``ffn_dim`` (feed-forward width), ``dropout``.

Encoder layer: ``forward(src [B,S,D], pos [B,S,D], reference_points [B,S,L,2],
spatial_shapes, padding_mask [B,S]) -> [B,S,D]``. Decoder layer: ``forward(tgt [B,Q,D],
query_pos [B,Q,D], reference_points [B,Q,L,2|4], memory [B,S,D], spatial_shapes,
memory_padding_mask [B,S], self_attn_mask=None) -> [B,Q,D]``. ``spatial_shapes`` is a list
of ``(h, w)`` python ints; padding masks are True at padding; reference points are in 0..1 of
the padded maps; ``self_attn_mask`` is ``detr_transformer``'s: bool ``[Q,Q]`` over the
queries decoded, True = may not attend (``query_group_mask``), or None.

Query groups (``query_groups`` G, Group DETR): ``query_embed`` has G·Q rows, group g the rows
``g·Q ..``; train mode decodes all G·Q with the block-diagonal self-attention mask in every
decoder layer (``SetDecoding.groups`` G; hidden and references ``[L,B,G·Q,..]``; box
refinement is per query, so it refines each group's boxes alike), eval mode the first Q only.
Not with ``two_stage`` (its queries are the encoder's top-Q proposals, not learned rows).

References (``SetDecoding.references``), the box each layer's prediction is relative to:

- without refinement: ``[L,B,Q,2]``, the initial points ``sigmoid(reference_points(query_pos))``
  ``(cx, cy)`` for every layer;
- with refinement (``with_box_refine``): ``[L,B,Q,4]`` cxcywh. Layer 0 used the initial point;
  its row is that point with ``(w, h) = (0.5, 0.5)``. Since ``inverse_sigmoid(0.5) == 0``
  exactly, a head's ``sigmoid(delta + inverse_sigmoid(reference))`` on that row equals the
  paper's 2-d rule (``delta[..., :2] += inverse_sigmoid(point)``) to the bit. Layer ``l > 0``
  used the previous layer's refined box, ``refine(l - 1, hidden, reference).detach()``.

So a head may always compute ``sigmoid(delta + inverse_sigmoid(ref))`` over the reference's
own width: all four coordinates for 4-d references, the first two for 2-d ones.

Two-stage (``two_stage``, which needs ``with_box_refine`` as in the paper and transformers):
no learned queries; the head's ``proposer()`` scores one proposal per encoder position and
the top Q (``two_stage.TwoStageQueries``) give the queries and the initial reference boxes,
so references are ``[L,B,Q,4]`` from layer 0 (the selected proposal boxes, detached), and the
decoding carries every position's ``encoder_logits [B,S,K]`` / ``encoder_boxes [B,S,4]``.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn

from anchorage.core import component
from anchorage.core.build import build_child
from anchorage.core.fields import injected
from anchorage.core.interfaces.set_prediction import (
    BoxRefiner,
    Proposer,
    SetDecoding,
    SetTransformer,
    query_group_mask,
)
from anchorage.core.registry import TRANSFORMER_LAYERS, TRANSFORMERS
from anchorage.plugins.set_prediction.deformable_attention import MultiScaleDeformableAttention
from anchorage.plugins.set_prediction.feedforward import FeedForward
from anchorage.plugins.set_prediction.two_stage import TwoStageQueries

Tensor = torch.Tensor
_positive = attrs.validators.ge(1)
_probability = [attrs.validators.ge(0.0), attrs.validators.lt(1.0)]


def _heads_divide(inst: Any, _attr: attrs.Attribute, value: int) -> None:
    # Cross-field check: runs when the Config is built (inst is None during spec validation).
    if inst is not None and inst.hidden_dim % value != 0:
        raise ValueError(
            f"hidden_dim ({inst.hidden_dim}) must be divisible by num_heads, got {value}"
        )


def _one_group_when_two_stage(inst: Any, _attr: attrs.Attribute, value: int) -> None:
    # Cross-field check, as _heads_divide: two-stage queries are selected, not learned rows.
    if inst is not None and value > 1 and inst.two_stage:
        raise ValueError(
            f"query_groups: {value} needs learned queries, but two_stage: true selects them "
            "from the encoder's proposals; use query_groups: 1 with two_stage"
        )


def _needs_refinement(inst: Any, _attr: attrs.Attribute, value: bool) -> None:
    # Cross-field check, as _heads_divide: the paper's two-stage variant refines boxes.
    if inst is not None and value and not inst.with_box_refine:
        raise ValueError(
            "two_stage: true needs with_box_refine: true (the decoder refines the encoder's "
            "proposal boxes layer by layer, as in the paper and transformers' "
            "DeformableDetrConfig), got with_box_refine: false"
        )


@attrs.frozen(kw_only=True)
class LayerConfig:
    """The parameters a set transformer injects into each of its layers (none from the spec)."""

    hidden_dim: int = injected(validator=_positive)
    num_heads: int = injected(validator=[_positive, _heads_divide])
    num_levels: int = injected(validator=_positive)
    num_points: int = injected(validator=_positive)
    ffn_dim: int = injected(validator=_positive)
    dropout: float = injected(validator=_probability)


_LAYER_EXAMPLE = {
    "hidden_dim": 16, "num_heads": 2, "num_levels": 2, "num_points": 2, "ffn_dim": 32,
    "dropout": 0.1,
}  # fmt: skip


def _xavier_then_attention(layer: nn.Module) -> None:
    """The paper's init: xavier for every matrix, then the deformable attentions' own init."""
    for p in layer.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)
    for m in layer.modules():
        if isinstance(m, MultiScaleDeformableAttention):
            m.reset_parameters()


@TRANSFORMER_LAYERS.register("deformable_encoder_layer", examples=(_LAYER_EXAMPLE,))
class DeformableEncoderLayer(nn.Module):
    """Post-norm encoder layer: deformable self-attention over all levels, then feed-forward.

    ``forward(src [B,S,D], pos [B,S,D], reference_points [B,S,L,2], spatial_shapes,
    padding_mask [B,S] | None) -> [B,S,D]``; ``src`` the flattened levels, ``pos`` their
    position + level embeddings, ``reference_points`` each pixel's centre ``(x, y)`` in 0..1 of
    every level's padded map.
    """

    Config = LayerConfig

    def __init__(self, cfg: LayerConfig) -> None:
        super().__init__()
        d = cfg.hidden_dim
        self.self_attn = MultiScaleDeformableAttention(
            d, cfg.num_heads, cfg.num_levels, cfg.num_points
        )
        self.self_attn_norm = nn.LayerNorm(d)
        self.ffn = FeedForward(d, cfg.ffn_dim, cfg.dropout)
        self.ffn_norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(cfg.dropout)
        _xavier_then_attention(self)

    def forward(
        self,
        src: Tensor,
        pos: Tensor,
        reference_points: Tensor,
        spatial_shapes: list[tuple[int, int]],
        padding_mask: Tensor | None = None,
    ) -> Tensor:
        attended = self.self_attn(src + pos, reference_points, src, spatial_shapes, padding_mask)
        src = self.self_attn_norm(src + self.dropout(attended))
        return self.ffn_norm(src + self.dropout(self.ffn(src)))


@TRANSFORMER_LAYERS.register("deformable_decoder_layer", examples=(_LAYER_EXAMPLE,))
class DeformableDecoderLayer(nn.Module):
    """Post-norm decoder layer: query self-attention, deformable cross-attention, feed-forward.

    ``forward(tgt [B,Q,D], query_pos [B,Q,D], reference_points [B,Q,L,2|4], memory [B,S,D],
    spatial_shapes, memory_padding_mask [B,S] | None, self_attn_mask [Q,Q] | None) -> [B,Q,D]``.
    ``query_pos`` is added to the self-attention's queries and keys and to the cross-attention's
    queries; ``reference_points`` are points ``(x, y)`` or boxes cxcywh in 0..1 of every level's
    padded map. Self-attention is ``nn.MultiheadAttention`` (with attention dropout, as the
    paper), masked by ``self_attn_mask`` (True = may not attend) when given.
    """

    Config = LayerConfig

    def __init__(self, cfg: LayerConfig) -> None:
        super().__init__()
        d = cfg.hidden_dim
        self.self_attn = nn.MultiheadAttention(
            d, cfg.num_heads, dropout=cfg.dropout, batch_first=True
        )
        self.self_attn_norm = nn.LayerNorm(d)
        self.cross_attn = MultiScaleDeformableAttention(
            d, cfg.num_heads, cfg.num_levels, cfg.num_points
        )
        self.cross_attn_norm = nn.LayerNorm(d)
        self.ffn = FeedForward(d, cfg.ffn_dim, cfg.dropout)
        self.ffn_norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(cfg.dropout)
        _xavier_then_attention(self)

    def forward(
        self,
        tgt: Tensor,
        query_pos: Tensor,
        reference_points: Tensor,
        memory: Tensor,
        spatial_shapes: list[tuple[int, int]],
        memory_padding_mask: Tensor | None = None,
        self_attn_mask: Tensor | None = None,
    ) -> Tensor:
        qk = tgt + query_pos
        attended = self.self_attn(qk, qk, tgt, attn_mask=self_attn_mask, need_weights=False)[0]
        tgt = self.self_attn_norm(tgt + self.dropout(attended))
        attended = self.cross_attn(
            tgt + query_pos, reference_points, memory, spatial_shapes, memory_padding_mask
        )
        tgt = self.cross_attn_norm(tgt + self.dropout(attended))
        return self.ffn_norm(tgt + self.dropout(self.ffn(tgt)))


def _layer(kind: str) -> Any:
    return component("transformer_layer", factory=lambda: {"type": kind})


_EXAMPLE = {
    "num_queries": 5, "num_levels": 2, "hidden_dim": 16, "num_heads": 2, "encoder_layers": 1,
    "decoder_layers": 2, "ffn_dim": 32, "encoder_points": 2, "decoder_points": 2,
}  # fmt: skip


@TRANSFORMERS.register(
    "deformable_detr_transformer",
    examples=(
        _EXAMPLE,
        {**_EXAMPLE, "with_box_refine": True},
        {**_EXAMPLE, "with_box_refine": True, "two_stage": True},
        {**_EXAMPLE, "with_box_refine": True, "query_groups": 3},
    ),
)
class DeformableDetrTransformer(SetTransformer):
    """Deformable DETR's transformer: L_enc encoder layers over the levels, L decoder layers.

    ``forward(features, masks, positions, refine=None) -> SetDecoding``: ``features`` the
    ``num_levels`` projected maps float ``[B,D,h_l,w_l]`` (fine → coarse), ``masks`` bool
    ``[B,h_l,w_l]`` True at padding (padding at the bottom and right), ``positions``
    ``[B,D,h_l,w_l]``. Returns ``hidden [L,B,Q,D]`` (each decoder layer's output) and
    ``references`` ``[L,B,Q,2]`` points, or ``[L,B,Q,4]`` boxes with ``with_box_refine`` (see
    the module docstring). With ``with_box_refine`` (``uses_refiner``), ``refine`` — the
    head's box branch, cxcywh 0..1 — is required and makes each next layer's reference. With
    ``two_stage`` (``uses_proposer``), ``propose`` — the head's encoder-proposal branches — is
    required too, and the decoding has ``encoder_logits [B,S,K]`` / ``encoder_boxes [B,S,4]``.

    Parameters: ``level_embed [num_levels,D]``; ``query_embed`` ``nn.Embedding(G·Q, 2D)`` (G
    ``query_groups``, 1 by default; train mode decodes all G·Q with ``hidden [L,B,G·Q,D]``,
    eval mode the first Q), split into the query position (first D) and content (last D);
    ``reference_points`` ``Linear(D, 2)``
    on the query position; with ``two_stage`` instead of those two, ``two_stage``
    (``TwoStageQueries``). ``encode``, ``queries`` and ``decode`` are the stages.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        num_queries: int = injected(validator=_positive)
        num_levels: int = injected(validator=_positive)
        hidden_dim: int = attrs.field(default=256, validator=_positive)
        num_heads: int = attrs.field(default=8, validator=[_positive, _heads_divide])
        encoder_layers: int = attrs.field(default=6, validator=attrs.validators.ge(0))
        decoder_layers: int = attrs.field(default=6, validator=_positive)
        ffn_dim: int = attrs.field(default=1024, validator=_positive)
        dropout: float = attrs.field(default=0.1, validator=_probability)
        encoder_points: int = attrs.field(default=4, validator=_positive)
        decoder_points: int = attrs.field(default=4, validator=_positive)
        with_box_refine: bool = False
        two_stage: bool = attrs.field(default=False, validator=_needs_refinement)
        query_groups: int = attrs.field(default=1, validator=[_positive, _one_group_when_two_stage])
        encoder_layer: Any = _layer("deformable_encoder_layer")
        decoder_layer: Any = _layer("deformable_decoder_layer")

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.hidden_dim = d = cfg.hidden_dim
        self.num_levels = cfg.num_levels
        self.num_decoder_layers = cfg.decoder_layers
        self.uses_refiner = cfg.with_box_refine
        self.uses_proposer = cfg.two_stage
        self.num_queries, self.query_groups = cfg.num_queries, cfg.query_groups
        shared = {
            "hidden_dim": d, "num_heads": cfg.num_heads, "num_levels": cfg.num_levels,
            "ffn_dim": cfg.ffn_dim, "dropout": cfg.dropout,
        }  # fmt: skip
        self.encoder = nn.ModuleList(
            build_child(
                "transformer_layer", cfg.encoder_layer, num_points=cfg.encoder_points, **shared
            )
            for _ in range(cfg.encoder_layers)
        )
        self.decoder = nn.ModuleList(
            build_child(
                "transformer_layer", cfg.decoder_layer, num_points=cfg.decoder_points, **shared
            )
            for _ in range(cfg.decoder_layers)
        )
        self.level_embed = nn.Parameter(torch.empty(cfg.num_levels, d))
        nn.init.normal_(self.level_embed)
        if cfg.two_stage:
            self.two_stage = TwoStageQueries(d)
        else:
            self.query_embed = nn.Embedding(cfg.query_groups * cfg.num_queries, 2 * d)
            self.reference_points = nn.Linear(d, 2)
            nn.init.xavier_uniform_(self.reference_points.weight, gain=1.0)
            nn.init.zeros_(self.reference_points.bias)

    def forward(
        self,
        features: list[Tensor],
        masks: list[Tensor],
        positions: list[Tensor],
        refine: BoxRefiner | None = None,
        propose: Proposer | None = None,
    ) -> SetDecoding:
        self._check_inputs(features, masks, positions)
        if self.uses_refiner and refine is None:
            raise ValueError(
                "deformable_detr_transformer: with_box_refine needs the head's refine "
                "callable (refine(layer, hidden, reference) -> boxes), got None"
            )
        if self.uses_proposer and propose is None:
            raise ValueError(
                "deformable_detr_transformer: two_stage needs the head's propose callable "
                "(propose(query, proposals) -> logits, boxes, scores), got None"
            )
        src, pos, padding, shapes = flatten_levels(features, masks, positions, self.level_embed)
        ratios = valid_ratios(masks, src.dtype)
        memory = self.encode(src, pos, padding, shapes, ratios)
        query_pos, tgt, reference, encoder = self.queries(memory, padding, shapes, propose)
        decoding = self.decode(memory, padding, shapes, ratios, refine, (query_pos, tgt, reference))
        if encoder is None:
            return decoding
        return attrs.evolve(
            decoding, encoder_logits=encoder["logits"], encoder_boxes=encoder["boxes"]
        )

    def encode(
        self,
        src: Tensor,
        pos: Tensor,
        padding_mask: Tensor,
        spatial_shapes: list[tuple[int, int]],
        ratios: Tensor,
    ) -> Tensor:
        """Encoder over the flattened levels: ``src``/``pos`` ``[B,S,D]``, ``padding_mask
        [B,S]``, ``ratios [B,L,2]`` → memory ``[B,S,D]``."""
        reference = encoder_reference_points(spatial_shapes, ratios)
        for layer in self.encoder:
            src = layer(src, pos, reference, spatial_shapes, padding_mask)
        return src

    def queries(
        self,
        memory: Tensor,
        padding_mask: Tensor,
        spatial_shapes: list[tuple[int, int]],
        propose: Proposer | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor] | None]:
        """The decoder's start: ``query_pos [B,Q,D]``, ``tgt [B,Q,D]`` and the initial
        reference, points ``[B,Q,2]`` from the learned queries or, two-stage, the selected
        proposal boxes ``[B,Q,4]`` cxcywh (then also the proposals' ``logits [B,S,K]`` and
        ``boxes [B,S,4]``; else None). With query groups, in train mode, G·Q queries."""
        if self.uses_proposer:
            return self.two_stage(memory, padding_mask, spatial_shapes, propose, self.num_queries)
        b = memory.shape[0]
        rows = self.groups() * self.num_queries
        query_pos, tgt = self.query_embed.weight[:rows].split(self.hidden_dim, dim=1)
        query_pos = query_pos.unsqueeze(0).expand(b, -1, -1)
        tgt = tgt.unsqueeze(0).expand(b, -1, -1)
        return query_pos, tgt, self.reference_points(query_pos).sigmoid(), None

    def decode(
        self,
        memory: Tensor,
        padding_mask: Tensor,
        spatial_shapes: list[tuple[int, int]],
        ratios: Tensor,
        refine: BoxRefiner | None = None,
        start: tuple[Tensor, Tensor, Tensor] | None = None,
    ) -> SetDecoding:
        """Decoder over the queries; ``memory [B,S,D]``, ``padding_mask [B,S]``, ``ratios
        [B,L,2]``, ``start`` the ``(query_pos, tgt, reference)`` of ``queries`` (computed
        when None). Returns every layer's output and reference (module docstring)."""
        if start is None:
            start = self.queries(memory, padding_mask, spatial_shapes)[:3]
        query_pos, tgt, reference = start
        groups = self.groups()
        mask = query_group_mask(groups, self.num_queries, memory.device)
        hidden, references = [], []
        for index, layer in enumerate(self.decoder):
            level_reference = scale_by_valid_ratios(reference, ratios)
            tgt = layer(
                tgt, query_pos, level_reference, memory, spatial_shapes, padding_mask,
                self_attn_mask=mask,
            )  # fmt: skip
            relative_to = as_box_reference(reference) if self.uses_refiner else reference
            hidden.append(tgt)
            references.append(relative_to)
            if self.uses_refiner and index + 1 < len(self.decoder):
                reference = refine(index, tgt, relative_to).detach()
        return SetDecoding(
            hidden=torch.stack(hidden), references=torch.stack(references), groups=groups
        )

    def groups(self) -> int:
        """The query groups decoded now: ``query_groups`` in train mode, 1 in eval mode."""
        return self.query_groups if self.training else 1

    def _check_inputs(
        self, features: list[Tensor], masks: list[Tensor], positions: list[Tensor]
    ) -> None:
        counts = (len(features), len(masks), len(positions))
        if counts != (self.num_levels,) * 3:
            raise ValueError(
                f"deformable_detr_transformer: expected {self.num_levels} levels of features, "
                f"masks and positions, got {counts}"
            )
        for level, x in enumerate(features):
            if x.dim() != 4 or x.shape[1] != self.hidden_dim:
                raise ValueError(
                    f"deformable_detr_transformer: features[{level}] must be [B,{self.hidden_dim},"
                    f"h,w], got {tuple(x.shape)}"
                )


def flatten_levels(
    features: list[Tensor], masks: list[Tensor], positions: list[Tensor], level_embed: Tensor
) -> tuple[Tensor, Tensor, Tensor, list[tuple[int, int]]]:
    """Levels → sequences: ``src [B,S,D]``, ``pos [B,S,D]`` (positions + each level's row of
    ``level_embed [L,D]``), ``padding [B,S]`` (True at padding) and the ``(h, w)`` of each level
    (python ints from the shapes), S = sum of ``h*w``, row-major per level."""
    shapes = [(x.shape[-2], x.shape[-1]) for x in features]
    src = torch.cat([x.flatten(2).transpose(1, 2) for x in features], dim=1)
    pos = torch.cat(
        [p.flatten(2).transpose(1, 2) + level_embed[level] for level, p in enumerate(positions)],
        dim=1,
    )
    padding = torch.cat([m.flatten(1) for m in masks], dim=1)
    return src, pos, padding, shapes


def valid_ratios(masks: list[Tensor], dtype: torch.dtype = torch.float32) -> Tensor:
    """``[B,L,2]`` ``(w, h)``: the fraction of each level's padded map that the image covers,
    read from the first row and column of each mask ``[B,h,w]`` (True at padding)."""
    ratios = []
    for mask in masks:
        valid = ~mask
        h, w = mask.shape[-2:]
        valid_h = valid[:, :, 0].sum(1).to(dtype) / h
        valid_w = valid[:, 0, :].sum(1).to(dtype) / w
        ratios.append(torch.stack([valid_w, valid_h], -1))
    return torch.stack(ratios, 1)


def encoder_reference_points(spatial_shapes: list[tuple[int, int]], ratios: Tensor) -> Tensor:
    """Each pixel's centre as a reference on every level: ``[B,S,L,2]`` ``(x, y)``.

    The centre is normalised by the image's valid extent on its own level, then scaled by each
    level's valid ratio (``ratios [B,L,2]``), so it lands on the same image point everywhere.
    """
    points = []
    for level, (h, w) in enumerate(spatial_shapes):
        ys = torch.arange(h, dtype=ratios.dtype, device=ratios.device) + 0.5
        xs = torch.arange(w, dtype=ratios.dtype, device=ratios.device) + 0.5
        y, x = torch.meshgrid(ys, xs, indexing="ij")
        y = y.reshape(-1)[None] / (ratios[:, None, level, 1] * h)
        x = x.reshape(-1)[None] / (ratios[:, None, level, 0] * w)
        points.append(torch.stack([x, y], -1))
    return torch.cat(points, 1)[:, :, None] * ratios[:, None]


def scale_by_valid_ratios(reference: Tensor, ratios: Tensor) -> Tensor:
    """A reference in 0..1 of the image (``[B,Q,2]`` points or ``[B,Q,4]`` boxes) → the same on
    every level's padded map: ``[B,Q,L,2|4]`` (``ratios [B,L,2]`` ``(w, h)``)."""
    if reference.shape[-1] == 4:
        ratios = torch.cat([ratios, ratios], -1)
    return reference[:, :, None] * ratios[:, None]


def as_box_reference(reference: Tensor) -> Tensor:
    """``[B,Q,2]`` points → ``[B,Q,4]`` boxes with ``(w, h) = (0.5, 0.5)`` (``inverse_sigmoid``
    of 0.5 is exactly 0, so box deltas apply to a point as the paper does); boxes pass."""
    if reference.shape[-1] == 4:
        return reference
    return torch.cat([reference, torch.full_like(reference, 0.5)], -1)
