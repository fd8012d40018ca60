"""``seg_miou``: semantic segmentation mean IoU, pixel accuracy and per-class IoU.

Accumulates a confusion matrix over every pixel whose target label is not ``ignore_index``
(255). Predictions are the argmax of the model's ``{"out": [B,K,H,W]}`` logits, K = C + 1
classes including background 0; targets are ``semantic_mask`` int64 [H,W] (0 background,
1..C). When images of a batch differ in size, each prediction is cropped to its target's
size (the top-left part, as batched padding puts the image there).

Keys: ``seg/mIoU`` (mean over classes that occur in targets or predictions, background
included, as torchvision's segmentation references), ``seg/pixel_acc``, ``seg/mean_acc``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import torch

from anchorage.core.config import injected
from anchorage.core.evaluation import Metric
from anchorage.core.registry import METRICS


@attrs.frozen(kw_only=True)
class SegConfig:
    class_names: tuple[str, ...] = injected(default=())
    num_classes: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(2))
    )  # K incl. background; default len(class_names) + 1
    ignore_index: int = 255


@METRICS.register("seg_miou", config=SegConfig, examples=({"class_names": ("a", "b")},))
class SegMIoU(Metric):
    """Confusion-matrix mIoU (see the module docstring)."""

    task = "semantic"

    def __init__(self, cfg: SegConfig) -> None:
        self.cfg = cfg
        self.names = ["background", *cfg.class_names]
        self.k = cfg.num_classes or len(cfg.class_names) + 1
        if self.k < 2:
            raise ValueError("seg_miou needs class_names (from the dataset) or num_classes >= 2")
        self.reset()

    def reset(self) -> None:
        """Zero the confusion matrix (rows: target class, columns: predicted class)."""
        self.confusion = torch.zeros(self.k, self.k, dtype=torch.int64)

    def update(self, outputs: Any, targets: Sequence[dict[str, Any]]) -> None:
        """Add one batch: ``outputs["out"]`` [B,K,H,W] logits, targets' ``semantic_mask``."""
        logits = outputs["out"] if isinstance(outputs, dict) else outputs
        pred = logits.detach().argmax(1).cpu()
        for p, t in zip(pred, targets):
            gt = t["semantic_mask"].as_subclass(torch.Tensor).cpu().long()
            p = p[: gt.shape[-2], : gt.shape[-1]]
            keep = gt != self.cfg.ignore_index
            if ((gt[keep] < 0) | (gt[keep] >= self.k)).any():
                raise ValueError(f"semantic_mask has labels outside 0..{self.k - 1} (and 255)")
            idx = gt[keep] * self.k + p[keep]
            self.confusion += torch.bincount(idx, minlength=self.k * self.k).reshape(self.k, self.k)

    def state(self) -> np.ndarray:
        """The confusion matrix (numpy)."""
        return self.confusion.numpy()

    def merge(self, states: Sequence[np.ndarray]) -> None:
        """Sum of every rank's confusion matrix."""
        self.confusion = torch.from_numpy(np.sum(np.stack(states), 0)).to(torch.int64)

    def per_class(self) -> tuple[np.ndarray, np.ndarray]:
        """IoU and accuracy (recall) per class [K], NaN where the class never occurs."""
        cm = self.confusion.double().numpy()
        tp = np.diag(cm)
        union = cm.sum(0) + cm.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
            acc = np.where(cm.sum(1) > 0, tp / cm.sum(1), np.nan)
        return iou, acc

    def compute(self) -> dict[str, float]:
        """``seg/mIoU``, ``seg/pixel_acc``, ``seg/mean_acc`` (-1 before any pixel)."""
        total = int(self.confusion.sum())
        if total == 0:
            return {"seg/mIoU": -1.0, "seg/pixel_acc": -1.0, "seg/mean_acc": -1.0}
        iou, acc = self.per_class()
        return {
            "seg/mIoU": float(np.nanmean(iou)),
            "seg/pixel_acc": float(np.trace(self.confusion.numpy()) / total),
            "seg/mean_acc": float(np.nanmean(acc)),
        }

    def summary(self) -> str:
        """mIoU, pixel accuracy and per-class IoU / accuracy rows."""
        res = self.compute()
        iou, acc = self.per_class()
        lines = [
            f"segmentation: mIoU {res['seg/mIoU']:.4f}, pixel acc {res['seg/pixel_acc']:.4f}, "
            f"mean acc {res['seg/mean_acc']:.4f}",
            f"{'class':<20} {'IoU':>7} {'acc':>7}",
        ]
        for c in range(self.k):
            name = self.names[c] if c < len(self.names) else str(c)
            lines.append(f"{name:<20} {iou[c]:>7.4f} {acc[c]:>7.4f}")
        return "\n".join(lines)
