"""``greedy_bipartite``: the SSD / d2l greedy one-to-one assignment, then a threshold."""

from __future__ import annotations

import attrs
import torch

from anchorage.core.interfaces import IoUMatcher
from anchorage.core.registry import MATCHERS


@MATCHERS.register("greedy_bipartite", examples=({}, {"threshold": 0.3}))
class GreedyBipartiteMatcher(IoUMatcher):
    """Greedy bipartite matching (d2l ``assign_anchor_to_bbox``).

    Repeatedly take the largest IoU left in each image's gt × anchor matrix, assign that
    anchor to that gt and remove its row and column, until no positive IoU is left (each gt
    gets at most one anchor this way; a gt overlapping no anchor gets none). Every anchor not
    assigned so far takes its best gt when that IoU is ``>= threshold``, else ``-1``.
    Never returns ``-2``. ``match_iou``: float ``[B,G,A]`` (padded rows = -1) → int64 ``[B,A]``;
    loops over at most G rounds, each vectorized over the batch and the anchors.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        threshold: float = attrs.field(
            default=0.5, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)]
        )

    def __init__(self, cfg: Config) -> None:
        self.threshold = cfg.threshold

    def match_iou(self, iou: torch.Tensor) -> torch.Tensor:
        if iou.dim() != 3:
            raise ValueError(
                f"greedy_bipartite: expected IoU [B,G,A], got shape {tuple(iou.shape)}"
            )
        b, g, a = iou.shape
        if g == 0:
            return torch.full((b, a), self.BACKGROUND, dtype=torch.int64, device=iou.device)
        vals, best_gt = iou.max(dim=1)
        matches = torch.where(vals >= self.threshold, best_gt, torch.full_like(best_gt, -1))
        work = iou.clone()
        batch = torch.arange(b, device=iou.device)
        for _ in range(g):
            top, flat = work.flatten(1).max(dim=1)  # [B]
            ok = top > 0
            if not ok.any():
                break
            rows, cols = flat // a, flat % a
            bi, rows, cols = batch[ok], rows[ok], cols[ok]
            matches[bi, cols] = rows
            work[bi, rows, :] = -1.0
            work[bi, :, cols] = -1.0
        return matches
