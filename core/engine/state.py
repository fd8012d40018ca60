"""The training checkpoint: what is saved, and how a run is restored from it.

Payload (tensors and plain data only, so ``weights_only=True`` loads it)::

    model       model state_dict (unwrapped from DDP)
    optimizer   optimizer state_dict        scheduler  scheduler state_dict
    scaler      AMP GradScaler state_dict   spec       the resolved spec (plain data)
    epoch       epochs completed before this point (int)
    iteration   optimizer steps done so far (int)
    epoch_iter  steps done inside the current epoch (int, 0 at an epoch boundary)
    rng         {"python": tuple, "numpy": {...tensor...}, "torch": ByteTensor,
                 "cuda": [ByteTensor per device]}  (rank 0's)
    rng_ranks   [rng of rank r for r in range(world_size)] (DDP runs only)
    metrics     the last evaluation's metrics (dict[str, float])

Writing goes through ``anchorage.core.checkpoint.save_checkpoint`` (atomic) and reading
through ``read_checkpoint`` (weights-only); this module never writes a file itself.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from torch import nn

from ..checkpoint import check_state_fits, read_checkpoint, save_checkpoint
from ..errors import CheckpointError


@attrs.define
class Counters:
    """Where the run is: epochs completed, optimizer steps, steps inside this epoch."""

    epoch: int = 0
    iteration: int = 0
    epoch_iter: int = 0

    @property
    def epoch_number(self) -> int:
        """The 1-based epoch the current weights come from (logs of train and eval rows)."""
        return self.epoch + (1 if self.epoch_iter else 0)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (all devices); optionally deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs a fixed workspace for deterministic matmuls (read at first CUDA use)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def capture_rng() -> dict[str, Any]:
    """RNG states of python, numpy, torch (CPU) and every CUDA device, as plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of ``capture_rng`` (CUDA states only when the device count matches)."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel (or ``model`` itself)."""
    return getattr(model, "module", model)


def make_payload(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    spec: dict,
    epoch: int,
    iteration: int,
    epoch_iter: int,
    metrics: dict[str, float] | None = None,
    rng_ranks: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The checkpoint dict of a training run at a step boundary."""
    extra = {"rng_ranks": rng_ranks} if rng_ranks else {}
    return {
        **extra,
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "spec": spec,
        "epoch": int(epoch),
        "iteration": int(iteration),
        "epoch_iter": int(epoch_iter),
        "rng": capture_rng(),
        "metrics": dict(metrics or {}),
    }


def write_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically (the core writer)."""
    return save_checkpoint(path, payload)


def load_training_state(
    path: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    rank: int = 0,
    world_size: int = 1,
) -> dict[str, Any]:
    """Restore everything a run needs from ``path``; returns the checkpoint dict.

    RNG states are restored too (this rank's own when the checkpoint has one per rank of a
    job of the same size). A checkpoint of another model is a CheckpointError
    listing the mismatched keys and shapes; one without optimizer state (weights only)
    cannot be resumed.
    """
    data = read_checkpoint(path)
    missing = [k for k in ("model", "optimizer", "scheduler", "iteration") if k not in data]
    if missing:
        raise CheckpointError(
            f"{path}: cannot resume: the checkpoint has no {missing} (a weights-only file?); "
            "use it to initialise a model instead"
        )
    target = unwrap(model)
    check_state_fits(target, data["model"], str(path))
    target.load_state_dict(data["model"])
    try:
        optimizer.load_state_dict(data["optimizer"])
    except (ValueError, KeyError) as exc:
        raise CheckpointError(
            f"{path}: optimizer state does not fit (different param_groups?): {exc}"
        ) from None
    scheduler.load_state_dict(data["scheduler"])
    if data.get("scaler"):
        scaler.load_state_dict(data["scaler"])
    per_rank = data.get("rng_ranks") or []
    if len(per_rank) == world_size and world_size > 1:
        restore_rng(per_rank[rank])
    elif "rng" in data:
        restore_rng(data["rng"])
    return data
