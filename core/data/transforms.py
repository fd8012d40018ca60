"""Transform pipelines: registered transforms.v2 components composed over (image, target).

Each registered transform (``plugins/transforms``) builds a ``torchvision.transforms.v2``
transform. Boxes (``tv_tensors.BoundingBoxes``) and masks (``tv_tensors.Mask``) in the target
follow the image through every geometric op; nothing here does box arithmetic by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision.transforms import v2

from ..config import ComponentSpec


def sanitize_labels_getter(inputs: Any) -> tuple[torch.Tensor, ...]:
    """Per-box tensors that ``v2.SanitizeBoundingBoxes`` must filter with the boxes.

    ``inputs`` is ``(image, target)``; returns ``labels``, ``iscrowd`` and ``area`` (those
    present). Instance masks [N,H,W] are filtered by torchvision itself.
    """
    target = inputs[1] if isinstance(inputs, (tuple, list)) else inputs
    return tuple(target[k] for k in ("labels", "iscrowd", "area") if k in target)


class Pipeline:
    """Applies v2 transforms in order to ``(image, target)``.

    When the boxes changed (geometric ops), ``area`` is recomputed: the instance-mask pixel
    count when masks are present, else the box area. ``orig_size`` and ``image_id`` are kept.
    """

    def __init__(self, transforms: Sequence[Any]) -> None:
        self.transforms = list(transforms)
        self.compose = v2.Compose(self.transforms)

    def __call__(self, image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        before = target.get("boxes")
        image, target = self.compose(image, target)
        boxes = target.get("boxes")
        if boxes is not None and "area" in target and not _same(before, boxes):
            if "masks" in target and target["masks"].shape[0] == boxes.shape[0]:
                area = target["masks"].flatten(1).sum(1)
            else:
                wh = (boxes[:, 2:] - boxes[:, :2]).as_subclass(torch.Tensor)
                area = wh[:, 0] * wh[:, 1]
            target["area"] = area.float()
        return image, target

    def __repr__(self) -> str:
        return f"Pipeline({self.transforms!r})"


def _same(a: torch.Tensor | None, b: torch.Tensor) -> bool:
    return a is not None and a.shape == b.shape and bool(torch.equal(a, b))


def build_transforms(specs: Sequence[ComponentSpec]) -> Pipeline | None:
    """Build a pipeline from validated transform components (None for an empty list)."""
    if not specs:
        return None
    return Pipeline([s.build() for s in specs])
