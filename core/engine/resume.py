"""What a resumed run may change: the spec saved in the checkpoint vs the spec given now.

Resuming continues the saved optimizer, scheduler, RNG and data order, so a change to what
produced them cannot take effect; it used to be noted ("the spec differs") and silently lost.
Now:

- ``FIXED_ON_RESUME`` (the model, the optimizer and lr schedule, warm-up, parameter groups, the
  seed, AMP and the training batch size) may not change: ``check_resume_changes`` refuses with
  one line naming each key, its saved value and the new one;
- ``train.optimizer.lr`` applies: every parameter group's lr and the scheduler's base lrs are
  scaled by new / saved (warm-up and decay continue from where they were, at the new scale);
- everything else applies as it is read from the spec while training: ``train.epochs`` and
  ``max_iters`` (the loop's length; the lr schedule keeps its saved length), ``max_minutes``,
  ``grad_clip``, intervals, logging, ``eval``, the evaluation data, data paths and workers.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import SpecError

LR_KEY = "train.optimizer.lr"
FIXED_ON_RESUME = (
    "model",
    "train.optimizer",
    "train.lr_scheduler",
    "train.warmup_iters",
    "train.warmup_factor",
    "train.param_groups",
    "train.seed",
    "train.amp",
    "data.train.batch_size",
)


def spec_changes(old: Any, new: Any, prefix: str = "", limit: int | None = 10) -> list[str]:
    """Key paths whose values differ between two plain specs (sorted; at most ``limit``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            out += spec_changes(old.get(key), new.get(key), path, None)
        return out[:limit] if limit is not None else out
    return [] if old == new else [prefix]


def _value(spec: Any, path: str) -> Any:
    for part in path.split("."):
        spec = spec.get(part) if isinstance(spec, dict) else None
    return spec


def _show(spec: dict, path: str) -> str:
    value = _value(spec, path)
    return "unset" if value is None else repr(value)


def _fixed(path: str) -> bool:
    return path != LR_KEY and any(path == k or path.startswith(k + ".") for k in FIXED_ON_RESUME)


def check_resume_changes(saved: dict, new: dict, source: str) -> list[str]:
    """The changed key paths (all of them), after refusing those in ``FIXED_ON_RESUME``."""
    changed = spec_changes(saved, new, limit=None)
    refused = [p for p in changed if _fixed(p)]
    if refused:
        shown = ", ".join(f"{p} ({_show(saved, p)} -> {_show(new, p)})" for p in refused[:5])
        more = f" and {len(refused) - 5} more" if len(refused) > 5 else ""
        raise SpecError(
            f"{source}: cannot change on resume: {shown}{more}; resume with the checkpoint's "
            f"values, or start a new run (another --work-dir, or --overwrite); {LR_KEY}, "
            "train.epochs, max_iters, intervals, eval and data paths can change"
        )
    return changed


def lr_ratio(saved: dict, new: dict) -> float:
    """new lr / saved lr (1.0 when either is missing or the saved one is not positive)."""
    old, now = _value(saved, LR_KEY), _value(new, LR_KEY)
    if not isinstance(old, (int, float)) or not isinstance(now, (int, float)) or old <= 0:
        return 1.0
    return float(now) / float(old)


def scale_lr(optimizer: torch.optim.Optimizer, scheduler: Any, ratio: float) -> None:
    """Multiply the current and base lrs of every group (and nested scheduler) by ``ratio``."""
    for group in optimizer.param_groups:
        group["lr"] *= ratio
        if "initial_lr" in group:
            group["initial_lr"] *= ratio
    for sched in (scheduler, *getattr(scheduler, "_schedulers", ())):
        for attr in ("base_lrs", "_last_lr"):
            if getattr(sched, attr, None) is not None:
                setattr(sched, attr, [lr * ratio for lr in getattr(sched, attr)])


def apply_resume_changes(
    saved: dict, new: dict, optimizer: torch.optim.Optimizer, scheduler: Any, source: str
) -> str | None:
    """Refuse the changes that cannot apply, scale the lrs for a new ``train.optimizer.lr``;
    returns a note naming the changed keys (None when the spec is unchanged)."""
    changed = check_resume_changes(saved, new, source) if saved else []
    ratio = lr_ratio(saved, new)
    if ratio != 1.0:
        scale_lr(optimizer, scheduler, ratio)
    if not changed:
        return None
    shown = changed[:10] + (["..."] if len(changed) > 10 else [])
    return f"note: the spec differs from the checkpoint's at {shown} (applied)"
