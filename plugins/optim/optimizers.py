"""Optimizers: thin, validated wrappers over ``torch.optim``.

Each factory takes its ``Config`` with the injected ``params`` (an iterable of tensors or
of parameter-group dicts, as ``torch.optim`` accepts; the engine passes groups carrying
``lr_mult`` / ``weight_decay_mult``) and returns the ``torch.optim.Optimizer``. Values in
the config are the defaults of every group; a group's own ``lr`` / ``weight_decay`` wins.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from attrs import validators as v

from anchorage.core import SpecError, injected
from anchorage.core.registry import OPTIMIZERS

# One tiny parameter for the conformance kit's examples (built once, never trained).
_EXAMPLE = ({"params": (torch.nn.Parameter(torch.zeros(2)),)},)


def _positive(default: float) -> Any:
    return attrs.field(default=default, validator=v.gt(0.0))


def _non_negative(default: float = 0.0) -> Any:
    return attrs.field(default=default, validator=v.ge(0.0))


def _hyperparameters(cfg: Any) -> dict[str, Any]:
    """Every config field but ``params``, as keyword arguments: the fields carry the names
    ``torch.optim`` gives them."""
    kwargs = attrs.asdict(cfg, recurse=False)
    del kwargs["params"]
    return kwargs


def _fraction(default: float) -> Any:
    """A value in [0, 1) (momentum, beta, smoothing constant)."""
    return attrs.field(default=default, validator=[v.ge(0.0), v.lt(1.0)])


@attrs.frozen(kw_only=True)
class SGDConfig:
    """SGD; ``nesterov`` needs ``momentum > 0``."""

    params: Any = injected()
    lr: float = _positive(0.01)
    momentum: float = _fraction(0.9)
    dampening: float = _non_negative()
    nesterov: bool = False
    weight_decay: float = _non_negative()


@OPTIMIZERS.register("sgd", config=SGDConfig, examples=_EXAMPLE)
def sgd(cfg: SGDConfig) -> torch.optim.SGD:
    """Stochastic gradient descent with (Nesterov) momentum and weight decay."""
    if cfg.nesterov and (cfg.momentum <= 0 or cfg.dampening != 0):
        raise SpecError(
            f"optimizer sgd: nesterov needs momentum > 0 and dampening 0, got momentum "
            f"{cfg.momentum} and dampening {cfg.dampening}"
        )
    return torch.optim.SGD(cfg.params, **_hyperparameters(cfg))


@attrs.frozen(kw_only=True)
class AdamConfig:
    """Adam / AdamW hyper-parameters (AdamW decouples ``weight_decay``)."""

    params: Any = injected()
    lr: float = _positive(1e-3)
    betas: tuple[float, float] = attrs.field(
        default=(0.9, 0.999),
        converter=tuple,
        validator=v.deep_iterable(v.and_(v.ge(0.0), v.lt(1.0))),
    )
    eps: float = _positive(1e-8)
    weight_decay: float = _non_negative()
    amsgrad: bool = False


@OPTIMIZERS.register("adam", config=AdamConfig, examples=_EXAMPLE)
def adam(cfg: AdamConfig) -> torch.optim.Adam:
    """Adam (L2 weight decay added to the gradient)."""
    return torch.optim.Adam(cfg.params, **_hyperparameters(cfg))


@attrs.frozen(kw_only=True)
class AdamWConfig(AdamConfig):
    """AdamW: decoupled weight decay (default 0.01)."""

    weight_decay: float = _non_negative(0.01)


@OPTIMIZERS.register("adamw", config=AdamWConfig, examples=_EXAMPLE)
def adamw(cfg: AdamWConfig) -> torch.optim.AdamW:
    """AdamW (decoupled weight decay)."""
    return torch.optim.AdamW(cfg.params, **_hyperparameters(cfg))


@attrs.frozen(kw_only=True)
class RMSpropConfig:
    """RMSprop hyper-parameters (``alpha`` = smoothing constant)."""

    params: Any = injected()
    lr: float = _positive(0.01)
    alpha: float = _fraction(0.99)
    eps: float = _positive(1e-8)
    momentum: float = _fraction(0.0)
    centered: bool = False
    weight_decay: float = _non_negative()


@OPTIMIZERS.register("rmsprop", config=RMSpropConfig, examples=_EXAMPLE)
def rmsprop(cfg: RMSpropConfig) -> torch.optim.RMSprop:
    """RMSprop."""
    return torch.optim.RMSprop(cfg.params, **_hyperparameters(cfg))


@attrs.frozen(kw_only=True)
class AdagradConfig:
    """Adagrad hyper-parameters."""

    params: Any = injected()
    lr: float = _positive(0.01)
    lr_decay: float = _non_negative()
    initial_accumulator_value: float = _non_negative()
    eps: float = _positive(1e-10)
    weight_decay: float = _non_negative()


@OPTIMIZERS.register("adagrad", config=AdagradConfig, examples=_EXAMPLE)
def adagrad(cfg: AdagradConfig) -> torch.optim.Adagrad:
    """Adagrad."""
    return torch.optim.Adagrad(cfg.params, **_hyperparameters(cfg))
