"""The training engine: the ``train`` section, loop, checkpoints, logging, DDP, signals.

Library entry points (the tools are thin wrappers)::

    from anchorage.core.engine import train, evaluate_checkpoint, predict_images
    result = train(spec, "work_dirs/demo", resume=False, device=None)

Heavy modules load on first use, so that declaring the ``train`` section (``engine.config``,
loaded with the plugins) does not pull in the loop, TensorBoard or the data subsystem.
"""

from __future__ import annotations

from typing import Any

from .config import ParamGroupRule, TrainConfig

_LAZY = {
    "train": "trainer",
    "Trainer": "trainer",
    "TrainingDiverged": "health",
    "evaluate_checkpoint": "evaluate",
    "predict_images": "predict",
    "TrainingStopped": "signals",
    "build_optimizer": "optim",
    "build_scheduler": "optim",
    "build_param_groups": "optim",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = ["ParamGroupRule", "TrainConfig", *sorted(_LAZY)]
