"""``seg_miou``: semantic segmentation mean IoU, pixel accuracy and per-class IoU.

Accumulates a confusion matrix (a summed ``torchmetrics`` state, so ranks reduce by one
all-reduce) over every pixel whose target label is not ``ignore_index`` (255). Predictions are
the argmax of each image's ``sem_seg`` logits [K,H,W], K = C + 1 classes including background 0;
targets are ``semantic_mask`` int64 [H,W] (0 background, 1..C) of the same size.

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
from anchorage.core.errors import DataError
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

    def __init__(self, cfg: SegConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.names = ["background", *cfg.class_names]
        self.k = cfg.num_classes or len(cfg.class_names) + 1
        if self.k < 2:
            raise ValueError("seg_miou needs class_names (from the dataset) or num_classes >= 2")
        # rows: target class, columns: predicted class
        self.add_state(
            "confusion", torch.zeros(self.k, self.k, dtype=torch.int64), dist_reduce_fx="sum"
        )

    def update(self, outputs: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]]) -> None:
        """Add one batch: each output's ``sem_seg`` [K,H,W] against its target's
        ``semantic_mask`` [H,W]."""
        for i, (out, t) in enumerate(zip(outputs, targets)):
            if "sem_seg" not in out or "semantic_mask" not in t:
                raise DataError(
                    f"seg_miou needs 'sem_seg' in outputs and 'semantic_mask' in targets; image "
                    f"{i} has outputs {sorted(out)} and targets {sorted(t)}"
                )
            pred = out["sem_seg"].detach().argmax(0).to(self.device)
            gt = t["semantic_mask"].to(self.device, torch.int64)
            if pred.shape != gt.shape:
                raise DataError(
                    f"seg_miou: sem_seg of image {i} is {tuple(pred.shape)}, its semantic_mask "
                    f"{tuple(gt.shape)}; a model returns logits at its input image's size"
                )
            keep = gt != self.cfg.ignore_index
            if ((gt[keep] < 0) | (gt[keep] >= self.k)).any():
                raise ValueError(f"semantic_mask has labels outside 0..{self.k - 1} (and 255)")
            idx = gt[keep] * self.k + pred[keep]
            counts = torch.bincount(idx, minlength=self.k * self.k).reshape(self.k, self.k)
            self.confusion += counts

    def per_class(self) -> tuple[np.ndarray, np.ndarray]:
        """IoU and accuracy (recall) per class [K], NaN where the class never occurs."""
        cm = self.confusion.double().cpu().numpy()
        tp = np.diag(cm)
        union = cm.sum(0) + cm.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
            acc = np.where(cm.sum(1) > 0, tp / cm.sum(1), np.nan)
        return iou, acc

    def compute(self) -> dict[str, float]:
        """``seg/mIoU``, ``seg/pixel_acc``, ``seg/mean_acc`` (-1 before any pixel)."""
        total = int(self.confusion.sum())
        self._rows = self.per_class()  # from the reduced matrix, for summary()
        if total == 0:
            return {"seg/mIoU": -1.0, "seg/pixel_acc": -1.0, "seg/mean_acc": -1.0}
        iou, acc = self._rows
        return {
            "seg/mIoU": float(np.nanmean(iou)),
            "seg/pixel_acc": float(np.trace(self.confusion.cpu().numpy()) / total),
            "seg/mean_acc": float(np.nanmean(acc)),
        }

    def summary(self) -> str:
        """mIoU, pixel accuracy and per-class IoU / accuracy rows."""
        res = self.compute()
        iou, acc = self._rows
        lines = [
            f"segmentation: mIoU {res['seg/mIoU']:.4f}, pixel acc {res['seg/pixel_acc']:.4f}, "
            f"mean acc {res['seg/mean_acc']:.4f}",
            f"{'class':<20} {'IoU':>7} {'acc':>7}",
        ]
        for c in range(self.k):
            name = self.names[c] if c < len(self.names) else str(c)
            lines.append(f"{name:<20} {iou[c]:>7.4f} {acc[c]:>7.4f}")
        return "\n".join(lines)
