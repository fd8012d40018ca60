"""Multi-scale training: every ``every`` batches a new square input size, one per batch.

A split's ``multi_scale: {sizes: [320, 352, ..., 608], every: 10}`` (train only) makes
``build_dataloader`` draw, for the batches ``k*every .. (k+1)*every - 1`` of the run, one size
from ``sizes``; every image of those batches (and its boxes and masks) is resized to
``size × size`` after the split's transforms. The draw depends only on ``(seed, k)``, where ``k``
counts batches from the start of training (``epoch * batches_per_epoch + batch``), so it is the
same on every DDP rank, the same after a resume, and independent of the worker count.

The batch sampler yields ``(index, size)`` pairs and ``MultiScaleDataset`` resizes in the
(worker) process that loads the sample. Models train on the sizes as given (a preprocess that
keeps train sizes, e.g. ``preprocess: {keep_train_size: true}``) and infer at their fixed size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import torch
from torch.utils.data import BatchSampler, Dataset, Sampler
from torchvision.transforms import v2

from .transforms import Pipeline


def _sizes(_inst: object, attr: attrs.Attribute, value: tuple[int, ...]) -> None:
    if not value or any(v <= 0 for v in value):
        raise ValueError(f"{attr.name}: expected a non-empty list of sizes > 0, got {list(value)}")


@attrs.frozen(kw_only=True)
class MultiScaleConfig:
    """``sizes``: square side lengths in pixels to draw from; ``every``: batches per draw."""

    sizes: tuple[int, ...] = attrs.field(validator=_sizes)
    every: int = attrs.field(default=10, validator=attrs.validators.ge(1))


def scale_at(step: int, sizes: tuple[int, ...], every: int, seed: int) -> int:
    """The square size of batch ``step`` (counted from the start of training)."""
    period = step // every
    generator = torch.Generator().manual_seed((seed * 1_000_003 + period * 7_919 + 31) % 2**63)
    return sizes[int(torch.randint(len(sizes), (1,), generator=generator))]


class MultiScaleBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``sampler``'s indices as ``[(index, size), ...]``, one size per batch.

    ``set_epoch(epoch)`` (called by the training loop each epoch) places the batches of that
    epoch on the run's batch count, so ``scale_at(epoch * len(self) + i)`` sizes batch ``i``.
    ``sampler`` stays reachable as ``.sampler`` (its own ``set_epoch``/generator are used).
    """

    def __init__(
        self,
        sampler: Sampler[int],
        batch_size: int,
        drop_last: bool,
        cfg: MultiScaleConfig,
        seed: int,
    ) -> None:
        self.sampler = sampler
        self.batches = BatchSampler(sampler, batch_size, drop_last)
        self.cfg = cfg
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        start = self.epoch * len(self)
        for i, batch in enumerate(self.batches):
            size = scale_at(start + i, self.cfg.sizes, self.cfg.every, self.seed)
            yield [(index, size) for index in batch]

    def __len__(self) -> int:
        return len(self.batches)


class MultiScaleDataset(Dataset):
    """Loads ``dataset[index]`` for a key ``(index, size)`` and resizes it to ``size × size``.

    Images, ``boxes`` (``tv_tensors.BoundingBoxes``) and ``masks`` are resized by
    ``v2.Resize`` (``area`` recomputed); a ``None`` sample (a skipped bad file) stays None.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.class_names = list(getattr(dataset, "class_names", []))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, size = key
        sample = self.dataset[index]
        if sample is None:
            return None
        return Pipeline([v2.Resize((size, size), antialias=True)])(*sample)
