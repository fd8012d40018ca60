"""``detr_transformer``: DETR's encoder-decoder over one feature level, and its two layers.

Each layer adds the position embeddings to the attention queries and keys (never the values)
at every layer, as DETR does: the encoder's self-attention gets the pixel positions, the
decoder's self-attention the query positions, its cross-attention the query positions on the
queries and the pixel positions on the keys. Attention is ``torch.nn.MultiheadAttention``
(batch first; padding passed as ``key_padding_mask``). Layers are post-norm (DETR's default)
or pre-norm (``pre_norm: true``); the decoder's final LayerNorm is applied to every layer's
output for the heads (not fed back into the next layer, as in the original DETR).

Layer contracts (``transformer_layer`` registry; a replacement takes the same injected
``hidden_dim``, ``num_heads``, ``ffn_dim``, ``dropout`` and the same call):

- encoder layer: ``forward(src [B,S,D], pos [B,S,D], padding bool [B,S]) -> [B,S,D]``;
- decoder layer: ``forward(tgt [B,Q,D], query_pos [B,Q,D], memory [B,S,D], memory_pos
  [B,S,D], memory_padding bool [B,S], self_attn_mask=None) -> [B,Q,D]``; ``self_attn_mask``
  bool ``[Q,Q]`` over the Q queries decoded (G·Q with query groups), True = may not attend,
  or None: the groups' block-diagonal mask (``query_group_mask``; None with one group),
  applied to the queries' self-attention only (cross-attention is per query anyway).

Query groups (``query_groups`` G, Group DETR): G·Q learned queries; in train mode all of them
are decoded with the block mask in every decoder layer (``SetDecoding.groups`` G, ``hidden
[L,B,G·Q,D]`` group-major), in eval mode the first Q (group 0) alone, without a mask.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
import torch
from torch import nn

from anchorage.core.build import build_child
from anchorage.core.fields import component, injected
from anchorage.core.interfaces import BoxRefiner, SetDecoding, SetTransformer
from anchorage.core.interfaces.set_prediction import query_group_mask
from anchorage.core.registry import TRANSFORMER_LAYERS, TRANSFORMERS
from anchorage.plugins.set_prediction.feedforward import FeedForward


@attrs.frozen(kw_only=True)
class LayerConfig:
    """What the transformer injects into each of its layers."""

    hidden_dim: int = injected()
    num_heads: int = injected()
    ffn_dim: int = injected()
    dropout: float = injected()
    activation: Literal["relu", "gelu"] = "relu"
    pre_norm: bool = False


def _attention(cfg: LayerConfig) -> nn.MultiheadAttention:
    return nn.MultiheadAttention(
        cfg.hidden_dim, cfg.num_heads, dropout=cfg.dropout, batch_first=True
    )


class _Residual(nn.Module):
    """``x + dropout(f(x))`` with the LayerNorm before ``f`` (pre-norm) or after the sum."""

    def __init__(self, cfg: LayerConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(cfg.hidden_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.pre_norm = cfg.pre_norm

    def forward(self, x: torch.Tensor, f: Any) -> torch.Tensor:
        if self.pre_norm:
            return x + self.dropout(f(self.norm(x)))
        return self.norm(x + self.dropout(f(x)))


@TRANSFORMER_LAYERS.register(
    "detr_encoder_layer",
    examples=({"hidden_dim": 16, "num_heads": 2, "ffn_dim": 32, "dropout": 0.0},),
)
class DetrEncoderLayer(nn.Module):
    """Self-attention over the pixels (positions on queries and keys), then a feed-forward."""

    Config = LayerConfig

    def __init__(self, cfg: LayerConfig) -> None:
        super().__init__()
        self.self_attn = _attention(cfg)
        self.ffn = FeedForward(cfg.hidden_dim, cfg.ffn_dim, cfg.dropout, cfg.activation)
        self.attn_block = _Residual(cfg)
        self.ffn_block = _Residual(cfg)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        def attend(x: torch.Tensor) -> torch.Tensor:
            q = x + pos
            return self.self_attn(q, q, x, key_padding_mask=padding, need_weights=False)[0]

        return self.ffn_block(self.attn_block(src, attend), self.ffn)


@TRANSFORMER_LAYERS.register(
    "detr_decoder_layer",
    examples=({"hidden_dim": 16, "num_heads": 2, "ffn_dim": 32, "dropout": 0.0},),
)
class DetrDecoderLayer(nn.Module):
    """Self-attention over the queries, cross-attention to the pixels, then a feed-forward."""

    Config = LayerConfig

    def __init__(self, cfg: LayerConfig) -> None:
        super().__init__()
        self.self_attn = _attention(cfg)
        self.cross_attn = _attention(cfg)
        self.ffn = FeedForward(cfg.hidden_dim, cfg.ffn_dim, cfg.dropout, cfg.activation)
        self.self_block = _Residual(cfg)
        self.cross_block = _Residual(cfg)
        self.ffn_block = _Residual(cfg)

    def forward(
        self,
        tgt: torch.Tensor,
        query_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        memory_padding: torch.Tensor,
        self_attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        def self_attend(x: torch.Tensor) -> torch.Tensor:
            q = x + query_pos
            return self.self_attn(q, q, x, attn_mask=self_attn_mask, need_weights=False)[0]

        def cross_attend(x: torch.Tensor) -> torch.Tensor:
            return self.cross_attn(
                x + query_pos,
                memory + memory_pos,
                memory,
                key_padding_mask=memory_padding,
                need_weights=False,
            )[0]

        x = self.cross_block(self.self_block(tgt, self_attend), cross_attend)
        return self.ffn_block(x, self.ffn)


def _heads_divide(inst: Any, _attr: attrs.Attribute, value: int) -> None:
    if inst is not None and inst.hidden_dim % value:
        raise ValueError(f"num_heads {value} must divide hidden_dim {inst.hidden_dim}")


_EXAMPLE = {
    "hidden_dim": 16,
    "num_heads": 2,
    "encoder_layers": 1,
    "decoder_layers": 2,
    "ffn_dim": 32,
    "num_queries": 5,
    "num_levels": 1,
}


@TRANSFORMERS.register(
    "detr_transformer",
    examples=(
        _EXAMPLE,
        {**_EXAMPLE, "query_groups": 3, "query_init": "learned"},
    ),
)
class DetrTransformer(SetTransformer):
    """DETR's transformer: encoder over the pixels of one level, decoder over Q queries.

    Queries: a learned position embedding per query (``query_pos [Q,D]``); their content
    starts at zero (``query_init: zeros``, DETR) or as a second learned embedding
    (``query_init: learned``). ``forward`` returns ``SetDecoding(hidden [L,B,Q,D])`` with
    every decoder layer's output passed through the final LayerNorm, and no references
    (boxes are predicted from scratch). ``query_groups`` G > 1 (Group DETR): G·Q rows in each
    query embedding, group g the rows ``g·Q ..``; train mode decodes them all (``hidden
    [L,B,G·Q,D]``, ``groups`` G, block-diagonal self-attention), eval mode the first Q.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        hidden_dim: int = attrs.field(default=256, validator=attrs.validators.ge(1))
        num_heads: int = attrs.field(default=8, validator=[attrs.validators.ge(1), _heads_divide])
        encoder_layers: int = attrs.field(default=6, validator=attrs.validators.ge(0))
        decoder_layers: int = attrs.field(default=6, validator=attrs.validators.ge(1))
        ffn_dim: int = attrs.field(default=2048, validator=attrs.validators.ge(1))
        dropout: float = attrs.field(
            default=0.1, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)]
        )
        encoder_layer: Any = component(
            "transformer_layer", factory=lambda: {"type": "detr_encoder_layer"}
        )
        decoder_layer: Any = component(
            "transformer_layer", factory=lambda: {"type": "detr_decoder_layer"}
        )
        query_init: Literal["zeros", "learned"] = "zeros"
        query_groups: int = attrs.field(default=1, validator=attrs.validators.ge(1))
        num_queries: int = injected()
        num_levels: int = injected()

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        if cfg.num_levels != 1:
            raise ValueError(
                f"detr_transformer attends over one feature level but receives {cfg.num_levels} "
                "(give the backbone one return layer, or use deformable_detr_transformer)"
            )
        self.hidden_dim = cfg.hidden_dim
        self.num_decoder_layers = cfg.decoder_layers
        sizes = {
            "hidden_dim": cfg.hidden_dim,
            "num_heads": cfg.num_heads,
            "ffn_dim": cfg.ffn_dim,
            "dropout": cfg.dropout,
        }
        self.encoder = nn.ModuleList(
            build_child("transformer_layer", cfg.encoder_layer, **sizes)
            for _ in range(cfg.encoder_layers)
        )
        self.decoder = nn.ModuleList(
            build_child("transformer_layer", cfg.decoder_layer, **sizes)
            for _ in range(cfg.decoder_layers)
        )
        self.decoder_norm = nn.LayerNorm(cfg.hidden_dim)
        self.num_queries, self.query_groups = cfg.num_queries, cfg.query_groups
        rows = cfg.query_groups * cfg.num_queries
        self.query_pos = nn.Embedding(rows, cfg.hidden_dim)
        self.query_content = (
            nn.Embedding(rows, cfg.hidden_dim) if cfg.query_init == "learned" else None
        )
        for name, p in self.named_parameters():
            if p.dim() > 1 and not name.startswith("query_"):
                nn.init.xavier_uniform_(p)

    def forward(
        self,
        features: list[torch.Tensor],
        masks: list[torch.Tensor],
        positions: list[torch.Tensor],
        refine: BoxRefiner | None = None,
    ) -> SetDecoding:
        src = features[-1].flatten(2).transpose(1, 2)
        pos = positions[-1].flatten(2).transpose(1, 2)
        padding = masks[-1].flatten(1)
        for layer in self.encoder:
            src = layer(src, pos, padding)
        b = src.shape[0]
        groups = self.query_groups if self.training else 1
        rows = groups * self.num_queries
        query_pos = self.query_pos.weight[None, :rows].expand(b, -1, -1)
        tgt = (
            torch.zeros_like(query_pos)
            if self.query_content is None
            else self.query_content.weight[None, :rows].expand(b, -1, -1)
        )
        mask = query_group_mask(groups, self.num_queries, src.device)
        hidden = []
        for layer in self.decoder:
            tgt = layer(tgt, query_pos, src, pos, padding, self_attn_mask=mask)
            hidden.append(self.decoder_norm(tgt))
        return SetDecoding(torch.stack(hidden), groups=groups)
