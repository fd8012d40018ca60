"""Toy components registered by the core tests (and removed again afterwards)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import attrs
import torch
from torch import nn

from anchorage.core import component, injected
from anchorage.core.interfaces import Anchors, Assignment, GroundTruth, Matcher
from anchorage.core.registry import MATCHERS, MODELS


class ToyMatcher(Matcher):
    """Background everywhere (a toy)."""

    @attrs.frozen(kw_only=True)
    class Config:
        threshold: float = attrs.field(default=0.5, validator=attrs.validators.le(1.0))
        mode: str = attrs.field(default="fast", validator=attrs.validators.in_(("fast", "slow")))

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def __call__(self, anchors: Anchors, gt: GroundTruth, *, predictions=None) -> Assignment:
        shape = (gt.valid.shape[0], anchors.boxes.shape[-2])
        return Assignment(torch.full(shape, -1, dtype=torch.int64))


class ToyHeadlessModel(nn.Module):
    """A model with one layer and a matcher (a toy)."""

    @attrs.frozen(kw_only=True)
    class Config:
        num_classes: int = attrs.field(validator=attrs.validators.gt(0))
        sizes: tuple[int, ...] = (1, 2)
        matcher: object = component("matcher")
        extra: object = component("matcher", optional=True)
        width: int = injected(default=4)

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.matcher = cfg.matcher.build()
        self.layer = nn.Linear(cfg.width, cfg.num_classes)


@contextmanager
def toys() -> Iterator[None]:
    """Register the toy components for the duration of a test."""
    MATCHERS.register("toy_matcher")(ToyMatcher)
    MODELS.register("toy_model", examples=({"num_classes": 2, "matcher": None},))(ToyHeadlessModel)
    try:
        yield
    finally:
        MATCHERS.unregister("toy_matcher")
        MODELS.unregister("toy_model")
