"""Feeding the loop: per-epoch data order, mid-epoch skipping, moving batches to a device.

The order of epoch ``e`` depends only on (seed, e): the sampler's and the loader's
generators are re-seeded at each epoch start (``DistributedSampler.set_epoch`` under DDP),
so a run resumed in the middle of an epoch sees the same batches as an uninterrupted one.
Skipped batches are dropped at the batch-sampler level, without loading them.

Exactness caveat: with ``num_workers > 0`` random augmentations run in worker processes
whose RNG streams restart after a resume, so augmented pixels (not the order) may differ.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, RandomSampler, Sampler


def epoch_seed(seed: int, epoch: int) -> int:
    """The generator seed of ``epoch`` (distinct per epoch, fixed per (seed, epoch))."""
    return (seed * 1_000_003 + epoch * 7_919 + 17) % 2**63


class SkipBatches(Sampler[list[int]]):
    """A batch sampler yielding the batches of ``batch_sampler`` after the first ``skip``."""

    def __init__(self, batch_sampler: Iterable[list[int]], skip: int) -> None:
        self.batch_sampler = batch_sampler
        self.skip = skip

    def __iter__(self) -> Iterator[list[int]]:
        return itertools.islice(iter(self.batch_sampler), self.skip, None)

    def __len__(self) -> int:
        return max(len(self.batch_sampler) - self.skip, 0)  # type: ignore[arg-type]


def epoch_batches(loader: DataLoader, epoch: int, seed: int, *, skip: int = 0) -> Iterable:
    """The batches of ``epoch`` from ``loader``, without the first ``skip`` ones."""
    batch_sampler = loader.batch_sampler
    sampler = getattr(batch_sampler, "sampler", None) or loader.sampler
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    if hasattr(batch_sampler, "set_epoch"):  # e.g. multi-scale size schedules
        batch_sampler.set_epoch(epoch)
    seed_value = epoch_seed(seed, epoch)
    if loader.generator is not None:
        loader.generator.manual_seed(seed_value)
    if isinstance(sampler, RandomSampler):
        if sampler.generator is None:
            sampler.generator = torch.Generator()
        if sampler.generator is not loader.generator:
            sampler.generator.manual_seed(seed_value)
    if skip <= 0:
        return loader
    if batch_sampler is None:  # unbatched loader (batch_size=None)
        return itertools.islice(iter(loader), skip, None)
    workers = loader.num_workers
    return DataLoader(
        loader.dataset,
        batch_sampler=SkipBatches(batch_sampler, skip),
        num_workers=workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context if workers else None,
        generator=loader.generator,
        prefetch_factor=loader.prefetch_factor if workers else None,
    )


def move_to(images: list, targets: list, device: torch.device) -> tuple[list, list]:
    """Images (list of [3,H,W]) and target dicts with every tensor on ``device``."""
    non_blocking = device.type == "cuda"
    images = [img.to(device, non_blocking=non_blocking) for img in images]
    targets = [
        {k: _to(v, device, non_blocking) for k, v in t.items()} if isinstance(t, dict) else t
        for t in targets
    ]
    return images, targets


def _to(value: Any, device: torch.device, non_blocking: bool) -> Any:
    return value.to(device, non_blocking=non_blocking) if torch.is_tensor(value) else value
