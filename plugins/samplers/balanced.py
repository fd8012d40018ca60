"""Balanced positive/negative sampling (``balanced_sampler``), vectorized over the batch.

Semantics of torchvision's ``BalancedPositiveNegativeSampler``: per image at most
``int(batch_size_per_image * positive_fraction)`` positives, then negatives fill the rest of
``batch_size_per_image``; each chosen uniformly at random without replacement.

Instead of one ``randperm`` per image, every candidate gets a random key (one ``torch.rand``
call for the whole ``[B,N]`` batch) and the candidates with the smallest keys win; that is
a uniform draw without replacement too. ``order: first`` is the deterministic mode: keys are
the indices, so the first positives / negatives (in anchor or proposal order) win — tests use
it to compare losses with torchvision exactly (with torchvision's sampler replaced by the same
rule), and it is reproducible without touching the RNG.
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch

from anchorage.core.interfaces import Sampler
from anchorage.core.registry import SAMPLERS


@SAMPLERS.register(
    "balanced_sampler",
    examples=(
        {"batch_size_per_image": 4, "positive_fraction": 0.5},
        {"batch_size_per_image": 3, "positive_fraction": 0.25, "order": "first"},
    ),
)
class BalancedSampler(Sampler):
    """Matched ``[B,N]`` (>=0 positive, -1 negative, -2 ignore) → ``(positive, negative)``.

    Returns bool ``[B,N]`` masks, disjoint, on the input's device. Random choices use torch's
    global RNG (one ``torch.rand(B, N)`` call per call) unless ``order: first``.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        batch_size_per_image: int = attrs.field(default=256, validator=attrs.validators.gt(0))
        positive_fraction: float = attrs.field(
            default=0.5, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)]
        )
        order: Literal["random", "first"] = "random"

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def __call__(self, matched: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if matched.dim() != 2:
            raise ValueError(f"sampler expects matched indices [B,N], got {tuple(matched.shape)}")
        positive, negative = matched >= 0, matched == -1
        max_pos = int(self.cfg.batch_size_per_image * self.cfg.positive_fraction)
        num_pos = positive.sum(1).clamp(max=max_pos)
        num_neg = torch.minimum(negative.sum(1), self.cfg.batch_size_per_image - num_pos)
        keys = self._keys(matched)
        return _smallest(keys, positive, num_pos), _smallest(keys, negative, num_neg)

    def _keys(self, matched: torch.Tensor) -> torch.Tensor:
        b, n = matched.shape
        if self.cfg.order == "first":
            return torch.arange(n, device=matched.device, dtype=torch.float32).expand(b, n)
        return torch.rand(b, n, device=matched.device)


def _smallest(keys: torch.Tensor, candidates: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Mask of the ``count[b]`` candidates with the smallest keys in each row."""
    b, n = keys.shape
    if n == 0:
        return candidates.clone()
    masked = torch.where(candidates, keys, torch.full_like(keys, float("inf")))
    order = masked.argsort(dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n, device=keys.device).expand(b, n))
    return candidates & (rank < count[:, None])
