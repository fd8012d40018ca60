"""The ``train`` section of a spec: optimizer, schedule, precision, intervals, budget.

Example::

    train:
      epochs: 12
      optimizer: {type: sgd, lr: 0.01, momentum: 0.9, nesterov: true, weight_decay: 1.0e-4}
      lr_scheduler: {type: multistep, milestones: [8, 11], gamma: 0.1}
      warmup_iters: 100
      param_groups:
        - {pattern: "^backbone\\.", frozen: true}
        - {pattern: "^head\\.", lr_mult: 10.0}
      amp: bf16
      grad_clip: 10.0
      eval_interval: 2
      load_from: work_dirs/pretrain/last.pt     # fine-tune: fitting tensors only
      load_exclude: ["^head\\."]                # ... but not these: re-initialised
      best_metric: bbox/AP                      # best.pt
      ema: {decay: 0.999}
      accumulate_steps: 2
      early_stopping: {metric: bbox/AP, patience: 3}

Optimizers and schedulers are registered components (kinds ``optimizer`` and
``lr_scheduler``). The scheduler steps once per iteration; its periods (``step_size``,
``milestones``) are in epochs, converted with the number of iterations per epoch.
"""

from __future__ import annotations

from typing import Any

import attrs
from attrs import validators as v

from ..config import component
from ..plugins import hookimpl


def _regex(_inst: object, _attr: attrs.Attribute, value: str) -> None:
    import re

    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression {value!r}: {exc}") from None


@attrs.frozen(kw_only=True)
class ParamGroupRule:
    """Parameters whose name matches ``pattern`` (``re.search``) get these settings.

    Rules are tried in order; the first matching rule wins. ``frozen`` parameters get
    ``requires_grad=False`` and are left out of the optimizer.
    """

    pattern: str = attrs.field(validator=_regex)
    lr_mult: float = attrs.field(default=1.0, validator=v.ge(0.0))
    weight_decay_mult: float = attrs.field(default=1.0, validator=v.ge(0.0))
    frozen: bool = False


@attrs.frozen(kw_only=True)
class EmaConfig:
    """``decay`` of the running weight average per optimizer step (0.999: ~1000 steps)."""

    decay: float = attrs.field(default=0.999, validator=[v.gt(0.0), v.lt(1.0)])


@attrs.frozen(kw_only=True)
class EarlyStopping:
    """Stop when ``metric`` has not improved (by more than ``min_delta``, in the direction of
    ``mode``) for ``patience`` evaluations in a row; the run then ends as usual (final
    evaluation, ``last.pt``)."""

    metric: str = attrs.field(validator=v.min_len(1))
    patience: int = attrs.field(default=3, validator=v.ge(1))
    mode: str = attrs.field(default="max", validator=v.in_(("max", "min")))
    min_delta: float = attrs.field(default=0.0, validator=v.ge(0.0))


@attrs.frozen(kw_only=True)
class TrainConfig:
    """Settings of the training loop (``train:`` section of a spec).

    ``max_iters`` and ``max_minutes`` end the run early (benchmarks): training stops at
    the first step boundary past either limit, then checkpoints and evaluates as usual.
    ``amp``: ``auto`` is bfloat16 where the GPU supports it, else float16 with a grad scaler;
    ``bf16`` autocasts to bfloat16 on CUDA and on CPU, ``fp16`` (with a gradient scaler) on CUDA
    only. ``channels_last`` / ``compile`` (``torch.compile``) are off by default
    (``core/engine/acceleration.py``). ``load_from``: a checkpoint whose fitting tensors (name
    and shape) initialise the model before training starts fresh (fine-tuning; ignored on
    resume); ``load_exclude`` (regexes on tensor names) keeps matching tensors out of it, so
    they start from their initialisation (a re-initialised output layer). ``best_metric``
    (e.g. ``bbox/AP``, ``best_mode`` max or min) keeps ``best.pt`` from
    the best evaluation. ``ema`` averages the weights (evaluated and saved in ``best.pt``).
    ``accumulate_steps`` batches are summed into each optimizer step (``iteration`` and
    ``max_iters`` count batches; the lr schedule counts optimizer steps).
    ``early_stopping`` ends the run when a metric stops improving. ``eval_interval`` /
    ``checkpoint_interval`` are in epochs (0 = only at the end). ``device: auto`` picks CUDA
    when available.
    ``find_unused_parameters`` is passed to DDP (models whose forward skips trainable parts).
    ``sync_batchnorm`` turns BatchNorm layers into ``SyncBatchNorm`` under DDP on CUDA, so
    N processes x batch B normalise like one process x batch N*B (see the README's DDP notes).
    """

    epochs: int = attrs.field(default=12, validator=v.ge(1))
    optimizer: object = component("optimizer")
    lr_scheduler: object = component("lr_scheduler", optional=True)
    warmup_iters: int = attrs.field(default=0, validator=v.ge(0))
    warmup_factor: float = attrs.field(default=0.001, validator=[v.gt(0.0), v.le(1.0)])
    param_groups: tuple[ParamGroupRule, ...] = ()
    amp: str = attrs.field(default="none", validator=v.in_(("none", "auto", "bf16", "fp16")))
    channels_last: bool = False
    compile: bool = False
    grad_clip: float | None = attrs.field(default=None, validator=v.optional(v.gt(0.0)))
    max_iters: int | None = attrs.field(default=None, validator=v.optional(v.ge(1)))
    max_minutes: float | None = attrs.field(default=None, validator=v.optional(v.gt(0.0)))
    eval_interval: int = attrs.field(default=1, validator=v.ge(0))
    checkpoint_interval: int = attrs.field(default=1, validator=v.ge(0))
    keep_epoch_checkpoints: bool = False
    log_interval: int = attrs.field(default=20, validator=v.ge(1))
    log_images: int = attrs.field(default=4, validator=v.ge(0))
    seed: int = attrs.field(default=0, validator=v.ge(0))
    deterministic: bool = False
    device: str = attrs.field(default="auto", validator=v.in_(("auto", "cpu", "cuda")))
    find_unused_parameters: bool = False
    sync_batchnorm: bool = False
    progress: bool = True
    load_from: str | None = None
    load_exclude: tuple[str, ...] = attrs.field(
        default=(), validator=v.deep_iterable(member_validator=_regex)
    )
    best_metric: str | None = None
    best_mode: str = attrs.field(default="max", validator=v.in_(("max", "min")))
    ema: EmaConfig | None = None
    accumulate_steps: int = attrs.field(default=1, validator=v.ge(1))
    early_stopping: EarlyStopping | None = None


@hookimpl
def anchorage_sections(register: Any) -> None:
    """Declare the ``train`` section (the plugin manager calls this; see ``CORE_SECTIONS``)."""
    register("train", TrainConfig, doc="training loop: optimizer, schedule, AMP, intervals")
