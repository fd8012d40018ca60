"""Learning-rate schedulers over ``torch.optim.lr_scheduler``, stepped once per iteration.

The engine injects ``optimizer``, ``steps_per_epoch`` (iterations in one epoch) and
``total_steps`` (iterations the schedule spans: the run's iterations minus warm-up).
Periods a user writes (``step_size``, ``milestones``) are in epochs and counted from the
end of warm-up; ``cosine`` and ``linear`` span ``total_steps``.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from attrs import validators as v
from torch.optim import lr_scheduler as tls

from anchorage.core import injected
from anchorage.core.registry import LR_SCHEDULERS

_EXAMPLE = (
    {
        "optimizer": torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1),
        "steps_per_epoch": 10,
        "total_steps": 100,
    },
)


def _optimizer() -> Any:
    return injected()


def _count() -> Any:
    return injected(default=1, validator=v.ge(1))


def _gamma() -> Any:
    return attrs.field(default=0.1, validator=[v.gt(0.0), v.le(1.0)])


@attrs.frozen(kw_only=True)
class StepConfig:
    """Multiply the lr by ``gamma`` every ``step_size`` epochs."""

    optimizer: Any = _optimizer()
    steps_per_epoch: int = _count()
    total_steps: int = _count()
    step_size: int = attrs.field(validator=v.ge(1))
    gamma: float = _gamma()


@LR_SCHEDULERS.register("step", config=StepConfig, examples=({**_EXAMPLE[0], "step_size": 3},))
def step(cfg: StepConfig) -> tls.StepLR:
    """Step decay: lr × gamma every ``step_size`` epochs."""
    return tls.StepLR(cfg.optimizer, cfg.step_size * cfg.steps_per_epoch, gamma=cfg.gamma)


@attrs.frozen(kw_only=True)
class MultiStepConfig:
    """Multiply the lr by ``gamma`` at each milestone epoch (increasing)."""

    optimizer: Any = _optimizer()
    steps_per_epoch: int = _count()
    total_steps: int = _count()
    milestones: tuple[int, ...] = attrs.field(validator=[v.min_len(1), v.deep_iterable(v.ge(1))])
    gamma: float = _gamma()


@LR_SCHEDULERS.register(
    "multistep", config=MultiStepConfig, examples=({**_EXAMPLE[0], "milestones": (2, 4)},)
)
def multistep(cfg: MultiStepConfig) -> tls.MultiStepLR:
    """Multi-step decay at the given epochs."""
    return tls.MultiStepLR(
        cfg.optimizer, [m * cfg.steps_per_epoch for m in sorted(cfg.milestones)], cfg.gamma
    )


@attrs.frozen(kw_only=True)
class CosineConfig:
    """Cosine annealing from the base lr to ``eta_min`` over the whole run."""

    optimizer: Any = _optimizer()
    steps_per_epoch: int = _count()
    total_steps: int = _count()
    eta_min: float = attrs.field(default=0.0, validator=v.ge(0.0))


@LR_SCHEDULERS.register("cosine", config=CosineConfig, examples=_EXAMPLE)
def cosine(cfg: CosineConfig) -> tls.CosineAnnealingLR:
    """Cosine annealing (no restarts) over ``total_steps`` iterations."""
    return tls.CosineAnnealingLR(cfg.optimizer, T_max=cfg.total_steps, eta_min=cfg.eta_min)


@attrs.frozen(kw_only=True)
class LinearConfig:
    """Linear decay from ``start_factor`` × lr to ``end_factor`` × lr over the run."""

    optimizer: Any = _optimizer()
    steps_per_epoch: int = _count()
    total_steps: int = _count()
    start_factor: float = attrs.field(default=1.0, validator=[v.gt(0.0), v.le(1.0)])
    end_factor: float = attrs.field(default=0.0, validator=[v.ge(0.0), v.le(1.0)])


@LR_SCHEDULERS.register("linear", config=LinearConfig, examples=_EXAMPLE)
def linear(cfg: LinearConfig) -> tls.LinearLR:
    """Linear decay over ``total_steps`` iterations."""
    return tls.LinearLR(
        cfg.optimizer,
        start_factor=cfg.start_factor,
        end_factor=cfg.end_factor,
        total_iters=cfg.total_steps,
    )


@attrs.frozen(kw_only=True)
class ConstantConfig:
    """Keep the base lr."""

    optimizer: Any = _optimizer()
    steps_per_epoch: int = _count()
    total_steps: int = _count()


@LR_SCHEDULERS.register("constant", config=ConstantConfig, examples=_EXAMPLE)
def constant(cfg: ConstantConfig) -> tls.ConstantLR:
    """A constant learning rate."""
    return tls.ConstantLR(cfg.optimizer, factor=1.0, total_iters=0)
