"""The ``eval`` spec section: which metrics to compute on which split.

eval:
  split: val
  metrics: [{type: coco_bbox}]
"""

from __future__ import annotations

from typing import Literal

import attrs

from ..config import component_list


@attrs.frozen(kw_only=True)
class EvalSection:
    """Metric components and the data split they are computed on."""

    metrics: tuple = component_list("metric")
    split: Literal["train", "val", "test"] = "val"
