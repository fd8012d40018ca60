"""The ``data`` spec section: one optional entry per split.

data:
  train:
    dataset: {type: shapes, split: train, num_images: 1000}
    transforms: [{type: horizontal_flip}, {type: sanitize_boxes}]
    batch_size: 16
    num_workers: 2
  val:
    dataset: {type: shapes, split: val}
    batch_size: 16
"""

from __future__ import annotations

from typing import Any

import attrs

from ..config import component, component_list
from ..plugins import hookimpl
from .multiscale import MultiScaleConfig

SPLITS = ("train", "val", "test")


@attrs.frozen(kw_only=True)
class SplitConfig:
    """One split: the dataset component, its transform pipeline and loader options.

    ``shuffle`` defaults to True for ``train`` and False otherwise. ``drop_last`` drops a
    last incomplete batch (training only makes sense). ``multi_scale``
    (``{sizes: [...], every: N}``, train only) resizes each batch to a square size drawn every N
    batches (``core/data/multiscale.py``).
    """

    dataset: object = component("dataset", optional=True)
    transforms: tuple = component_list("transform")
    batch_size: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    num_workers: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    shuffle: bool | None = None
    drop_last: bool = False
    multi_scale: MultiScaleConfig = None  # type: ignore[assignment]


# The split fields are annotated ``SplitConfig`` (not ``SplitConfig | None``) so that an error
# inside a split names its key path; an absent split stays None.
@attrs.frozen(kw_only=True)
class DataSection:
    """The ``data`` section: ``train``, ``val`` and ``test`` splits (each optional)."""

    train: SplitConfig = None  # type: ignore[assignment]
    val: SplitConfig = None  # type: ignore[assignment]
    test: SplitConfig = None  # type: ignore[assignment]


@hookimpl
def anchorage_sections(register: Any) -> None:
    """Declare the ``data`` section (the plugin manager calls this; see ``CORE_SECTIONS``)."""
    register("data", DataSection, doc="datasets, transforms and loaders per split")
