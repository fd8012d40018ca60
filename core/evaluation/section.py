"""The ``eval`` spec section: which metrics to compute on which split.

eval:
  split: val
  metrics: [{type: coco_bbox}]
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from ..config import component_list
from ..plugins import hookimpl


@attrs.frozen(kw_only=True)
class EvalSection:
    """Metric components and the data split they are computed on."""

    metrics: tuple = component_list("metric")
    split: Literal["train", "val", "test"] = "val"


@hookimpl
def anchorage_sections(register: Any) -> None:
    """Declare the ``eval`` section (the plugin manager calls this; see ``CORE_SECTIONS``)."""
    register("eval", EvalSection, doc="metrics and the split they are computed on")
