"""``max_iou``: torchvision ``Matcher`` semantics, plus ``SSDMatcher``'s keep-best-anchor."""

from __future__ import annotations

import attrs
import torch

from anchorage.core.interfaces import IoUMatcher
from anchorage.core.registry import MATCHERS

_unit = [attrs.validators.ge(0.0), attrs.validators.le(1.0)]


def _low_le_high(inst: MaxIoUMatcher.Config, _attr: attrs.Attribute, value: float | None) -> None:
    # Cross-field check: runs when the Config is built (inst is None during spec validation).
    if inst is not None and value is not None and value > inst.high_threshold:
        raise ValueError(
            f"low_threshold must be <= high_threshold ({inst.high_threshold}), got {value}"
        )


@MATCHERS.register(
    "max_iou",
    examples=(
        {},
        {"high_threshold": 0.7, "low_threshold": 0.3, "allow_low_quality_matches": True},
        {"high_threshold": 0.5, "keep_best_anchor": True},
    ),
)
class MaxIoUMatcher(IoUMatcher):
    """Each anchor takes the gt it overlaps most; thresholds split positive/ignore/background.

    ``iou >= high_threshold`` → that gt's index; ``low_threshold <= iou < high_threshold`` →
    ``-2`` (ignore); below ``low_threshold`` → ``-1`` (background). ``low_threshold`` defaults
    to ``high_threshold`` (no ignore band). Then, as in torchvision:

    - ``allow_low_quality_matches`` (Faster R-CNN's RPN): every anchor whose IoU with some gt
      equals that gt's best IoU (ties included) takes its own best gt, whatever its IoU.
    - ``keep_best_anchor`` (``SSDMatcher``): every gt's single best anchor is assigned to it.

    ``match_iou``: float ``[B,G,A]`` (padded rows = -1, see ``batched_box_iou``) → int64 ``[B,A]``.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        high_threshold: float = attrs.field(default=0.5, validator=_unit)
        low_threshold: float | None = attrs.field(
            default=None,
            validator=attrs.validators.optional([*_unit, _low_le_high]),
        )
        allow_low_quality_matches: bool = False
        keep_best_anchor: bool = False

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.high = cfg.high_threshold
        self.low = cfg.high_threshold if cfg.low_threshold is None else cfg.low_threshold

    def match_iou(self, iou: torch.Tensor) -> torch.Tensor:
        if iou.dim() != 3:
            raise ValueError(f"max_iou: expected IoU [B,G,A], got shape {tuple(iou.shape)}")
        b, g, a = iou.shape
        if g == 0:
            return torch.full((b, a), self.BACKGROUND, dtype=torch.int64, device=iou.device)
        vals, best_gt = iou.max(dim=1)  # [B,A]
        matches = best_gt.clone()
        matches[vals < self.low] = self.BACKGROUND
        matches[(vals >= self.low) & (vals < self.high)] = self.IGNORE
        real = iou.amax(dim=2) >= 0  # [B,G]: False for padded / ignored rows (all -1)
        if self.cfg.allow_low_quality_matches:
            best_per_gt = iou.amax(dim=2, keepdim=True)  # [B,G,1]
            ties = ((iou == best_per_gt) & real[:, :, None]).any(dim=1)  # [B,A]
            matches = torch.where(ties, best_gt, matches)
        if self.cfg.keep_best_anchor:
            matches = _assign_best_anchor(matches, iou, real)
        return matches


def _assign_best_anchor(
    matches: torch.Tensor, iou: torch.Tensor, real: torch.Tensor
) -> torch.Tensor:
    """For every real gt g, set ``matches[b, argmax_a iou[b,g,a]] = g`` (later gt wins ties)."""
    b, g, a = iou.shape
    best_anchor = iou.argmax(dim=2)  # [B,G]
    # Padded rows write into a spare column A that is dropped afterwards.
    best_anchor = torch.where(real, best_anchor, torch.full_like(best_anchor, a))
    gt_index = torch.arange(g, device=iou.device).expand(b, g)
    out = torch.cat([matches, matches.new_zeros(b, 1)], dim=1)
    out.scatter_(1, best_anchor, gt_index)
    return out[:, :a]
