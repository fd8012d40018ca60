"""Building datasets and data loaders from a spec's ``data`` section.

``build_dataset(spec, split)`` builds the split's dataset component and attaches its transform
pipeline. ``build_dataloader(spec, split, distributed=..., seed=...)`` wraps it in a
``DataLoader`` yielding ``(images: list[Tensor[3,H,W]], targets: list[dict])``.

Sampling: a shuffled split uses a seeded ``RandomSampler`` (one process) or
``DistributedSampler`` (torchrun; call ``loader.sampler.set_epoch(epoch)`` every epoch); an
unshuffled split under torch.distributed uses ``ShardSampler``, which splits the indices
between ranks without padding so that evaluation sees every image exactly once.
Workers are seeded from the loader's generator (``seed`` + rank), numpy and ``random`` too.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
)

from ..errors import DataError, SpecError
from .batching import collate_detection
from .dataset import DetectionDataset
from .multiscale import MultiScaleBatchSampler, MultiScaleDataset
from .section import SPLITS, DataSection, SplitConfig
from .transforms import build_transforms


def data_section(spec: Any) -> DataSection:
    """The validated ``data`` section of a ``Spec`` (or the section itself)."""
    return spec if isinstance(spec, DataSection) else spec.section("data")


def split_config(spec: Any, split: str) -> SplitConfig:
    """The config of ``split`` (train/val/test); a SpecError when the spec has none."""
    if split not in SPLITS:
        raise SpecError(f"unknown data split {split!r}; expected one of {', '.join(SPLITS)}")
    cfg = getattr(data_section(spec), split)
    if cfg is None or cfg.dataset is None:
        name = getattr(spec, "path", None) or "spec"
        raise SpecError(f"{name}: data.{split}.dataset: this split needs a dataset component")
    return cfg


class TransformedDataset(Dataset):
    """Applies a pipeline to a dataset that has no ``set_transforms`` (third-party datasets)."""

    def __init__(self, dataset: Any, transforms: Any) -> None:
        self.dataset = dataset
        self.transforms = transforms
        self.class_names = list(getattr(dataset, "class_names", []))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        sample = self.dataset[index]
        if sample is None or self.transforms is None:
            return sample
        return self.transforms(*sample)


def build_dataset(spec: Any, split: str, *, transforms: bool = True) -> Dataset:
    """Build ``data.<split>.dataset`` with its ``transforms`` (skipped when False)."""
    cfg = split_config(spec, split)
    dataset = cfg.dataset.build()
    pipeline = build_transforms(cfg.transforms) if transforms else None
    if isinstance(dataset, DetectionDataset) or hasattr(dataset, "set_transforms"):
        dataset.set_transforms(pipeline)
        return dataset
    return TransformedDataset(dataset, pipeline) if pipeline is not None else dataset


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` of ``0..n-1``: every index on exactly one rank."""

    def __init__(self, n: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, n, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def seed_worker(worker_id: int) -> None:
    """Seed numpy and ``random`` in a DataLoader worker from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_dataloader(
    spec: Any,
    split: str,
    *,
    distributed: bool = False,
    seed: int = 0,
    dataset: Dataset | None = None,
    batch_size: int | None = None,
) -> DataLoader:
    """A DataLoader over ``split`` yielding ``(list[Tensor[3,H,W]], list[dict])`` batches.

    ``dataset`` reuses an already built dataset; ``batch_size`` overrides the spec's.
    ``distributed=True`` needs an initialised ``torch.distributed`` process group.
    """
    cfg = split_config(spec, split)
    if dataset is None:
        dataset = build_dataset(spec, split)
    shuffle = cfg.shuffle if cfg.shuffle is not None else split == "train"
    rank = dist.get_rank() if distributed else 0
    generator = torch.Generator().manual_seed(seed + rank)
    sampler: Sampler[int]
    if distributed and shuffle:
        sampler = DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=cfg.drop_last)
    elif distributed:
        sampler = ShardSampler(len(dataset), rank, dist.get_world_size())
    elif shuffle:
        sampler = RandomSampler(dataset, generator=generator)
    else:
        sampler = SequentialSampler(dataset)
    if cfg.multi_scale is not None:
        return _multi_scale_loader(cfg, split, dataset, sampler, batch_size, seed, generator)
    return DataLoader(
        dataset,
        batch_size=batch_size or cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.num_workers,
        collate_fn=collate_detection,
        drop_last=cfg.drop_last,
        worker_init_fn=seed_worker,
        generator=generator,
        persistent_workers=cfg.num_workers > 0,
    )


def _multi_scale_loader(
    cfg: SplitConfig,
    split: str,
    dataset: Dataset,
    sampler: Sampler[int],
    batch_size: int | None,
    seed: int,
    generator: torch.Generator,
) -> DataLoader:
    """A loader whose batches are resized to ``cfg.multi_scale``'s square sizes (train only).

    The size schedule uses ``seed`` without the rank, so every DDP rank draws the same sizes.
    """
    if split != "train":
        raise SpecError(
            f"data.{split}.multi_scale: multi-scale resizing is for training only "
            "(evaluation runs at the model's fixed size); remove it from this split"
        )
    batches = MultiScaleBatchSampler(
        sampler, batch_size or cfg.batch_size, cfg.drop_last, cfg.multi_scale, seed
    )
    return DataLoader(
        MultiScaleDataset(dataset),
        batch_sampler=batches,
        num_workers=cfg.num_workers,
        collate_fn=collate_detection,
        worker_init_fn=seed_worker,
        generator=generator,
        persistent_workers=cfg.num_workers > 0,
    )


def class_names_from_spec(spec: Any) -> list[str]:
    """Class names of the spec's first available split (test, val, train)."""
    data = spec.get("data")
    for split in ("test", "val", "train"):
        if data is None or getattr(data, split, None) is None:
            continue
        try:
            dataset = build_dataset(spec, split, transforms=False)
        except (DataError, OSError) as exc:
            raise DataError(
                f"cannot read class names from data.{split} ({exc}); pass --classes"
            ) from None
        return list(getattr(dataset, "class_names", []))
    raise SpecError(f"{spec.path or 'spec'}: no data split to take class names from; use --classes")
