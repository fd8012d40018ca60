"""Optimizer and scheduler from the ``train`` section: parameter groups, warm-up.

Parameter groups come from ``train.param_groups`` rules (regex on parameter names, first
match wins): frozen parameters get ``requires_grad=False`` and stay out of the optimizer;
the others are grouped by their (lr_mult, weight_decay_mult), and each group's lr and
weight decay are the optimizer's values times the multipliers (fine-tuning: head at 10×).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn
from torch.optim import lr_scheduler as tls

from ..errors import SpecError
from .config import ParamGroupRule, TrainConfig


def build_param_groups(model: nn.Module, rules: tuple[ParamGroupRule, ...]) -> list[dict]:
    """Split ``model``'s trainable parameters into optimizer groups by ``rules``.

    Returns dicts ``{"params": [Tensor], "names": [str], "lr_mult": float,
    "weight_decay_mult": float}`` in first-seen order; parameters matching a ``frozen`` rule
    are set ``requires_grad=False`` and left out. A rule that matches no parameter is a
    SpecError (a typo in a pattern would otherwise silently train the wrong parts).
    """
    compiled = [(re.compile(r.pattern), r) for r in rules]
    used = [False] * len(rules)
    groups: dict[tuple[float, float], dict] = {}
    for name, param in model.named_parameters():
        rule = None
        for i, (regex, candidate) in enumerate(compiled):
            if regex.search(name):
                rule, used[i] = candidate, True
                break
        if rule is not None and rule.frozen:
            param.requires_grad_(False)
        if not param.requires_grad:
            continue
        key = (rule.lr_mult, rule.weight_decay_mult) if rule else (1.0, 1.0)
        group = groups.setdefault(
            key, {"params": [], "names": [], "lr_mult": key[0], "weight_decay_mult": key[1]}
        )
        group["params"].append(param)
        group["names"].append(name)
    unused = [r.pattern for r, u in zip(rules, used) if not u]
    if unused:
        raise SpecError(
            f"train.param_groups: pattern(s) {unused} match no parameter of "
            f"{type(model).__name__} (names look like {_sample_names(model)})"
        )
    if not groups:
        raise SpecError("train.param_groups: every parameter is frozen; nothing to train")
    return list(groups.values())


def _sample_names(model: nn.Module) -> str:
    names = [n for n, _ in model.named_parameters()]
    return ", ".join(names[:3] + (["..."] if len(names) > 3 else []))


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The spec's optimizer over ``model``'s parameter groups, multipliers applied."""
    groups = build_param_groups(model, cfg.param_groups)
    plain = [{k: g[k] for k in ("params", "lr_mult", "weight_decay_mult")} for g in groups]
    optimizer = cfg.optimizer.build(params=plain)
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * group["lr_mult"]
        if "weight_decay" in group:
            group["weight_decay"] = group["weight_decay"] * group["weight_decay_mult"]
    return optimizer


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int, total_steps: int
) -> tls.LRScheduler:
    """The spec's scheduler (constant when none), behind a linear warm-up when asked.

    Stepped once per iteration. Warm-up scales the lr linearly from ``warmup_factor`` × lr
    to lr over ``warmup_iters`` iterations (torch ``LinearLR`` + ``SequentialLR``, as in
    torchvision's reference scripts); the main schedule then spans the remaining steps.
    """
    warmup = min(cfg.warmup_iters, max(total_steps - 1, 0))
    main_steps = max(total_steps - warmup, 1)
    injected: dict[str, Any] = {"steps_per_epoch": max(steps_per_epoch, 1)}
    if cfg.lr_scheduler is None:
        main = tls.ConstantLR(optimizer, factor=1.0, total_iters=0)
    else:
        main = cfg.lr_scheduler.build(optimizer=optimizer, total_steps=main_steps, **injected)
    if warmup == 0:
        return main
    ramp = tls.LinearLR(
        optimizer, start_factor=cfg.warmup_factor, end_factor=1.0, total_iters=warmup
    )
    return tls.SequentialLR(optimizer, [ramp, main], milestones=[warmup])
