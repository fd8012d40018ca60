"""torchrun / DDP support: process group from the environment, rank-0 helpers, reductions.

``tools/train.py`` runs unchanged under ``torchrun --nproc-per-node N``: torchrun sets
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; ``init_distributed`` then starts the process
group (NCCL on CUDA, gloo on CPU). Rank 0 writes logs and checkpoints; metric states are
reduced over ranks by torchmetrics (core.evaluation).
"""

from __future__ import annotations

import os
from typing import Any

import attrs
import torch
import torch.distributed as dist
from torch import nn


@attrs.frozen
class DistInfo:
    """This process's place in the job (world_size 1 when not distributed)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        """More than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes checkpoints."""
        return self.rank == 0


def env_requests_distributed() -> bool:
    """torchrun (or a launcher like it) started this process with WORLD_SIZE > 1."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group described by the environment (no-op for one process).

    Uses an already initialised group when there is one (tests with mp.spawn).
    """
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return DistInfo(dist.get_rank(), local, dist.get_world_size())
    if not env_requests_distributed():
        return DistInfo()
    backend = "nccl" if device_type == "cuda" else "gloo"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), local, dist.get_world_size())


def current() -> DistInfo:
    """The DistInfo of the running process group (or a single process)."""
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return DistInfo(dist.get_rank(), local, dist.get_world_size())
    return DistInfo()


def wrap_model(
    model: nn.Module, info: DistInfo, device: torch.device, *, find_unused: bool = False
) -> nn.Module:
    """DDP-wrap ``model`` when distributed (device_ids on CUDA)."""
    if not info.enabled:
        return model
    ids = [device.index if device.index is not None else info.local_rank]
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=ids if device.type == "cuda" else None,
        find_unused_parameters=find_unused,
    )


def convert_sync_batchnorm(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """``model`` with every BatchNorm layer a ``SyncBatchNorm`` (statistics over the global
    batch) when distributed; unchanged in one process. torch's SyncBatchNorm runs on CUDA
    only, so a CPU job with more than one process is an error here, before training."""
    if not info.enabled:
        return model
    if device.type != "cuda":
        from ..errors import AnchorageError

        raise AnchorageError(
            f"train.sync_batchnorm: torch's SyncBatchNorm runs on CUDA only; this job runs "
            f"{info.world_size} processes on {device.type}: set train.sync_batchnorm false"
        )
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order, on every rank (``[obj]`` for one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait for every rank (no-op for one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
