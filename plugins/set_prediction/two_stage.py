"""Two-stage Deformable DETR's query selection (Zhu et al. 2021, appendix A.4).

Every encoder position is a proposal: a box centred on its pixel with width and height
``0.05 · 2^level`` (cxcywh in 0..1 of the image's valid extent on its level). The head's
``proposer()`` scores the encoder memory there (its own class and box branches, after an
output projection + LayerNorm of the memory); the top Q proposals by the class-agnostic
score become the decoder's initial reference boxes (detached) and, through a sine embedding
of those boxes + Linear + LayerNorm, its query positions and contents. Numbers match
transformers' ``DeformableDetrModel`` with ``two_stage=True`` given the same weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from anchorage.core.interfaces.set_prediction import Proposer
from anchorage.plugins.set_prediction.positional import sin_cos

Tensor = torch.Tensor

# A proposal is usable when every coordinate lies strictly inside (0.01, 0.99) (transformers').
_LOW, _HIGH = 0.01, 0.99


def encoder_proposals(
    padding_mask: Tensor, spatial_shapes: list[tuple[int, int]], dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """One box per encoder position: ``proposals [B,S,4]`` cxcywh and ``valid [B,S]`` bool.

    ``padding_mask [B,S]`` True at padding, the levels flattened row-major in the order of
    ``spatial_shapes`` (``(h, w)`` python ints). A pixel ``(x, y)`` of level ``l`` gives
    ``((x + 0.5) / w_valid, (y + 0.5) / h_valid, 0.05 · 2^l, 0.05 · 2^l)`` with ``w_valid``
    / ``h_valid`` the image's valid columns / rows on that level (its first row / column of
    the mask). ``valid`` is False at padding and where a coordinate is outside (0.01, 0.99).
    """
    b, device = padding_mask.shape[0], padding_mask.device
    proposals, start = [], 0
    for level, (h, w) in enumerate(spatial_shapes):
        inside = ~padding_mask[:, start : start + h * w].view(b, h, w)
        extent = torch.stack([inside[:, 0, :].sum(1), inside[:, :, 0].sum(1)], -1)  # (w, h)
        ys = torch.arange(h, dtype=dtype, device=device)
        xs = torch.arange(w, dtype=dtype, device=device)
        y, x = torch.meshgrid(ys, xs, indexing="ij")
        centre = (torch.stack([x, y], -1)[None] + 0.5) / extent.view(b, 1, 1, 2)
        size = torch.full_like(centre, 0.05 * 2.0**level)
        proposals.append(torch.cat([centre, size], -1).view(b, h * w, 4))
        start += h * w
    out = torch.cat(proposals, 1)
    valid = ((out > _LOW) & (out < _HIGH)).all(-1) & ~padding_mask
    return out, valid


def proposal_embedding(boxes: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """Sine embedding of boxes ``[B,Q,4]`` cxcywh 0..1 → ``[B,Q,4·dim]`` (computed in float32):
    each coordinate times 2π becomes ``dim`` channels, sin / cos interleaved."""
    k = torch.arange(dim, dtype=torch.float32, device=boxes.device)
    dim_t = temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / dim)
    embedded = sin_cos(boxes.to(torch.float32) * (2 * math.pi), dim_t)
    return embedded.flatten(2).to(boxes.dtype)


class TwoStageQueries(nn.Module):
    """Encoder memory → the decoder's Q initial queries and reference boxes.

    Parameters: ``output_proj`` Linear(D, D) + ``output_norm`` LayerNorm(D) on the memory
    before the head scores it; ``query_proj`` Linear(2D, 2D) + ``query_norm`` LayerNorm(2D) on
    the selected boxes' sine embedding (first D: query positions, last D: contents).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.output_proj = nn.Linear(dim, dim)
        self.output_norm = nn.LayerNorm(dim)
        self.query_proj = nn.Linear(2 * dim, 2 * dim)
        self.query_norm = nn.LayerNorm(2 * dim)

    def forward(
        self,
        memory: Tensor,
        padding_mask: Tensor,
        spatial_shapes: list[tuple[int, int]],
        propose: Proposer,
        num_queries: int,
    ) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """``memory [B,S,D]``, ``padding_mask [B,S]`` → ``query_pos [B,Q,D]``, ``tgt [B,Q,D]``,
        ``reference [B,Q,4]`` cxcywh 0..1 (detached) and the proposals' ``logits [B,S,K]`` and
        ``boxes [B,S,4]`` (cxcywh 0..1; exactly ``(1, 1, 1, 1)`` at unusable positions)."""
        if memory.shape[1] < num_queries:
            raise ValueError(
                f"two_stage: the encoder has {memory.shape[1]} positions, fewer than the "
                f"{num_queries} queries it must select; use larger images or fewer queries"
            )
        proposals, valid = encoder_proposals(padding_mask, spatial_shapes, memory.dtype)
        query = memory.masked_fill(~valid[..., None], 0.0)
        query = self.output_norm(self.output_proj(query))
        scored = propose(query, proposals)
        boxes = torch.where(valid[..., None], scored["boxes"], 1.0)
        top = torch.topk(scored["scores"], num_queries, dim=1)[1]
        reference = torch.gather(boxes, 1, top[..., None].expand(-1, -1, 4)).detach()
        embedded = self.query_norm(self.query_proj(proposal_embedding(reference, self.dim // 2)))
        query_pos, tgt = embedded.split(self.dim, dim=2)
        return query_pos, tgt, reference, {"logits": scored["logits"], "boxes": boxes}
