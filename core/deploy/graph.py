"""The module an exporter traces: a model's ``export_forward`` with named, ordered outputs.

A model is deployable when it has ``export_forward(images) -> dict[str, Tensor]`` (``images``
float ``[B,3,H,W]`` in 0..1, the dict in a fixed layout: no per-image lists, no shape that
depends on the data) and ``export_info() -> dict`` (``task``: ``detection`` / ``semantic``,
``fixed_size_reason``: why H x W must be fixed, or None, and the input pipeline: ``mean``,
``std``, ``resize``). The detection skeletons, the segmenters and the classifiers implement
both; core knows them only through this protocol.

Layouts, per ``task`` (B images, D detection slots, C classes):

- ``detection`` (``DETECTION_OUTPUTS``): ``boxes [B,D,4]`` float32 xyxy input pixels,
  ``scores [B,D]``, ``labels [B,D]`` int64 in 1..C, ``num_detections [B]`` int64 (the rows
  from it on are zeros, label 0); ``MASK_OUTPUTS`` add ``masks``.
- ``semantic`` (``SEMANTIC_OUTPUTS``): ``sem_seg [B,C+1,H,W]`` logits.
- ``classification`` (``CLASSIFICATION_OUTPUTS``): ``probs [B,C]`` float32 softmax
  probabilities, label ``c`` at index ``c - 1`` (``export_info``'s ``topk`` is the k of the
  eager model's top-k); a localizer (``LOCALIZATION_OUTPUTS``) adds ``boxes [B,4]`` float32
  xyxy input pixels, one object per image.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import AnchorageError

DETECTION_OUTPUTS = ("boxes", "scores", "labels", "num_detections")
MASK_OUTPUTS = (*DETECTION_OUTPUTS, "masks")
SEMANTIC_OUTPUTS = ("sem_seg",)
CLASSIFICATION_OUTPUTS = ("probs",)
LOCALIZATION_OUTPUTS = (*CLASSIFICATION_OUTPUTS, "boxes")


def deployable(model: nn.Module) -> None:
    """AnchorageError naming the model's class when it has no export path."""
    missing = [
        m for m in ("export_forward", "export_info") if not callable(getattr(model, m, None))
    ]
    if missing:
        raise AnchorageError(
            f"{type(model).__name__} cannot be exported: it has no {' / '.join(missing)} "
            "(see anchorage.core.deploy.graph for the protocol)"
        )


class DeployGraph(nn.Module):
    """``forward(images [B,3,H,W]) -> tuple`` of the model's export outputs in ``names`` order.

    ``names`` are those of the model's task (``DETECTION_OUTPUTS``, plus ``masks`` when the
    model returns them, ``SEMANTIC_OUTPUTS``, ``CLASSIFICATION_OUTPUTS`` or
    ``LOCALIZATION_OUTPUTS``), read from one eager call on ``example``.
    """

    def __init__(self, model: nn.Module, example: torch.Tensor) -> None:
        super().__init__()
        deployable(model)
        self.model = model
        with torch.no_grad():
            self.names = tuple(model.export_forward(example))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model.export_forward(images)
        return tuple(out[k] for k in self.names)

    def info(self) -> dict[str, Any]:
        return dict(self.model.export_info())
