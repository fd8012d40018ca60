"""The config fields box postprocessors share: one definition of each threshold and count.

Each takes the component's default (torchvision's numbers differ per family) and carries the
validator, so ``score_thresh: float = score_thresh(0.05)`` in a ``Config`` is the whole field.
"""

from __future__ import annotations

from typing import Any

import attrs

_unit = [attrs.validators.ge(0.0), attrs.validators.le(1.0)]


def score_thresh(default: float) -> Any:
    """Candidates scoring at most this (0..1) are dropped before NMS."""
    return attrs.field(default=default, validator=_unit)


def nms_thresh(default: float) -> Any:
    """IoU (0..1) above which NMS removes the lower-scoring box of a group."""
    return attrs.field(default=default, validator=_unit)


def topk_candidates(default: int) -> Any:
    """Candidates kept per image (and per level or class, as the component says) before NMS."""
    return attrs.field(default=default, validator=attrs.validators.ge(1))


def detections_per_img(default: int) -> Any:
    """Detections kept per image after NMS, best first."""
    return attrs.field(default=default, validator=attrs.validators.ge(1))
