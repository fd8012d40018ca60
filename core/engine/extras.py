"""The optional parts of a training run, kept out of the loop: fine-tuning initialisation
(``load_from``), EMA weights, gradient accumulation, ``best.pt`` and early stopping.

``TrainingExtras(cfg)`` answers the trainer's questions at fixed points (setup, each batch,
each optimizer step, each evaluation, each checkpoint) and holds the state that ``last.pt``
must carry for an exact resume: ``"ema"`` (averaged weights), ``"watch"`` (best value and
evaluations without improvement) and, when a run stops inside an accumulation window,
``"accumulated_grads"`` (the gradients summed so far, in optimizer parameter order).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import read_checkpoint
from ..errors import CheckpointError
from .config import TrainConfig
from .tracking import MetricWatch


class TrainingExtras:
    """See the module docstring; every method is a no-op when its option is off."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.ema: Any = None
        self.best = (
            MetricWatch(cfg.best_metric, cfg.best_mode, key="train.best_metric")
            if cfg.best_metric
            else None
        )
        es = cfg.early_stopping
        self.early = (
            MetricWatch(es.metric, es.mode, es.min_delta, key="train.early_stopping.metric")
            if es is not None
            else None
        )

    # ---------------------------------------------------------------- setup
    def load_from(self, model: nn.Module, *, resuming: bool) -> str | None:
        """Initialise ``model`` from ``train.load_from`` (not on resume); the summary line."""
        if not self.cfg.load_from or resuming:
            return None
        from .finetune import load_matching

        return load_matching(model, self.cfg.load_from, exclude=self.cfg.load_exclude).line

    def setup_ema(self, model: nn.Module) -> None:
        """Start the weight average from ``model`` (unwrapped, before DDP)."""
        if self.cfg.ema is not None:
            from .ema import ModelEma

            self.ema = ModelEma(model, self.cfg.ema)

    def optimizer_steps(self, batches: int, steps_per_epoch: int | None = None) -> int:
        """Optimizer steps in ``batches`` batches (whole epochs of ``steps_per_epoch`` each,
        then a partial one; a window never spans two epochs)."""
        acc = self.cfg.accumulate_steps
        if steps_per_epoch is None:
            return math.ceil(batches / acc)
        full, rest = divmod(batches, steps_per_epoch)
        return full * math.ceil(steps_per_epoch / acc) + math.ceil(rest / acc)

    # ---------------------------------------------------------------- steps
    def window(self, epoch_iter: int, steps_per_epoch: int) -> tuple[bool, int, bool]:
        """For the batch after ``epoch_iter`` batches of this epoch: (first of its
        accumulation window, window size, last of it). Windows restart at every epoch."""
        acc = self.cfg.accumulate_steps
        start = (epoch_iter // acc) * acc
        size = min(acc, steps_per_epoch - start)
        return epoch_iter == start, size, epoch_iter + 1 - start == size

    def update_ema(self, model: nn.Module) -> None:
        """Fold the weights after an optimizer step into the average."""
        if self.ema is not None:
            self.ema.update(model)

    def eval_model(self, model: nn.Module) -> nn.Module:
        """The model to evaluate: the EMA weights when ``train.ema`` is set."""
        return self.ema.module if self.ema is not None else model

    # ---------------------------------------------------------------- evaluations
    def observe(self, metrics: Mapping[str, float], iteration: int) -> bool:
        """Take one evaluation; True when ``train.best_metric`` reached a new best."""
        if self.early is not None:
            self.early.observe(metrics, iteration)
        return self.best is not None and self.best.observe(metrics, iteration)

    def should_stop(self) -> bool:
        """Whether early stopping's patience ran out."""
        es = self.cfg.early_stopping
        return self.early is not None and es is not None and self.early.stale >= es.patience

    def stop_message(self) -> str:
        es = self.cfg.early_stopping
        assert self.early is not None and es is not None
        return (
            f"early stopping: {es.metric} did not improve for {es.patience} evaluations "
            f"(best {self.early.best} at iteration {self.early.best_iteration})"
        )

    def best_text(self) -> str:
        assert self.best is not None
        return f"{self.best.metric}={self.best.best:.4f}"

    # ---------------------------------------------------------------- checkpoints
    def state(self, optimizer: torch.optim.Optimizer, epoch_iter: int) -> dict[str, Any]:
        """What ``last.pt`` carries for these options (tensors and plain data)."""
        out: dict[str, Any] = {}
        if self.ema is not None:
            out["ema"] = self.ema.state_dict()
        watches = {k: w.state_dict() for k, w in (("best", self.best), ("early", self.early)) if w}
        if watches:
            out["watch"] = watches
        if epoch_iter % self.cfg.accumulate_steps:
            out["accumulated_grads"] = [
                p.grad.detach().clone() if p.grad is not None else torch.zeros(0)
                for g in optimizer.param_groups
                for p in g["params"]
            ]
        return out

    def load_state(self, data: Mapping[str, Any], optimizer: torch.optim.Optimizer) -> None:
        """Restore ``state()``'s output from a checkpoint dict (missing parts: fresh)."""
        if self.ema is not None and "ema" in data:
            self.ema.load_state_dict(data["ema"])
        for key, watch in (("best", self.best), ("early", self.early)):
            if watch is not None and key in (data.get("watch") or {}):
                watch.load_state_dict(data["watch"][key])
        grads = data.get("accumulated_grads")
        if grads is not None:
            params = [p for g in optimizer.param_groups for p in g["params"]]
            for p, grad in zip(params, grads):
                p.grad = grad.to(p.device) if grad.numel() else None

    @staticmethod
    def explain_mismatch(path: str | Path, spec_dict: Mapping[str, Any]) -> None:
        """Re-raise a resume mismatch as one sentence when the stored specs differ."""
        from .finetune import check_spec_matches

        try:
            data = read_checkpoint(path)
        except CheckpointError:
            return
        check_spec_matches(data, spec_dict, path)
