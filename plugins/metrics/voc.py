"""``voc_ap``: Pascal VOC average precision per class, 11-point (VOC2007) and all-point.

For each class, detections of all images are ranked by score; a detection is a true positive
when its best-overlapping ground truth box of that class (IoU > ``iou_threshold``) is not yet
taken, a false positive otherwise. Detections whose best match is a ``difficult`` box
(``iscrowd=1`` in our targets) count as neither, and difficult boxes are not in the recall
denominator — the rules of the VOC devkit. IoU is the continuous one (``torchvision.ops.
box_iou``), not the devkit's "+1 pixel" variant, so numbers can differ slightly from
devkit-converted ones on tiny boxes.

Keys: ``voc/mAP`` (all-point interpolation, VOC2010+), ``voc/mAP11`` (11-point, VOC2007); a
class without ground truth is left out of the means. ``summary`` lists both per class.

State: ``torchmetrics`` list states of float64 rows, concatenated across ranks before
``compute`` (each image on one rank; an image id seen twice on a rank keeps its first record):
image ids, ground truth ``(id, x1, y1, x2, y2, label, difficult)``, detections
``(id, x1, y1, x2, y2, score, label)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import torch
from torchvision.ops import box_iou

from anchorage.core.config import injected
from anchorage.core.evaluation import Metric
from anchorage.core.evaluation.state import rows_by_image, table
from anchorage.core.registry import METRICS


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().as_subclass(torch.Tensor).numpy()
    return np.asarray(x)


def ap_all_point(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope (VOC2010+ all-point interpolation)."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    changed = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[changed + 1] - mrec[changed]) * mpre[changed + 1]))


def ap_11_point(recall: np.ndarray, precision: np.ndarray) -> float:
    """Mean of the best precision at recall >= 0, 0.1, ..., 1 (VOC2007)."""
    points = [
        precision[recall >= t].max() if (recall >= t).any() else 0.0 for t in np.linspace(0, 1, 11)
    ]
    return float(np.mean(points))


def match_image(
    gt_boxes: np.ndarray,
    difficult: np.ndarray,
    dt_boxes: np.ndarray,
    scores: np.ndarray,
    thr: float,
) -> np.ndarray:
    """Greedy VOC matching in one image for one class: per detection 1 (tp), 0 (fp), -1 (ignored).

    Matching in descending score order inside one image gives the same flags as the devkit's
    global order, because detections only compete for boxes of their own image.
    """
    flags = np.zeros(len(dt_boxes), dtype=np.int64)
    if len(gt_boxes) == 0 or len(dt_boxes) == 0:
        return flags
    order = np.argsort(-scores, kind="stable")
    iou = box_iou(torch.from_numpy(dt_boxes[order]), torch.from_numpy(gt_boxes)).numpy()
    best, best_gt = iou.max(1), iou.argmax(1)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for k, d in enumerate(order):  # sequential by nature: a box is taken once
        if best[k] <= thr:
            continue
        j = best_gt[k]
        if difficult[j]:
            flags[d] = -1
        elif not taken[j]:
            flags[d], taken[j] = 1, True
    return flags


def _row_tensor(*columns: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.column_stack(columns), dtype=torch.float64)


@attrs.frozen(kw_only=True)
class VocConfig:
    class_names: tuple[str, ...] = injected(default=())
    iou_threshold: float = attrs.field(
        default=0.5, validator=[attrs.validators.gt(0.0), attrs.validators.lt(1.0)]
    )


@METRICS.register("voc_ap", config=VocConfig, examples=({"class_names": ("a", "b")},))
class VocAP(Metric):
    """Pascal VOC AP per class (see the module docstring): ``voc/mAP``, ``voc/mAP11``."""

    def __init__(self, cfg: VocConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.class_names = list(cfg.class_names)
        for name in ("ids", "gt", "dt"):
            self.add_state(name, [], dist_reduce_fx="cat")
        self._seen: set[int] = set()
        self.images: dict[int, dict[str, np.ndarray]] = {}

    def reset(self) -> None:
        """Forget every image."""
        super().reset()
        self._seen = set()
        self.images = {}

    def update(self, outputs: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]]) -> None:
        """Record ground truth (boxes, labels, iscrowd = difficult) and detections per image."""
        for out, tgt in zip(outputs, targets):
            image_id = int(tgt["image_id"])
            if image_id in self._seen:
                continue
            self._seen.add(image_id)
            n, k = len(tgt["labels"]), len(out["labels"])
            difficult = _np(tgt.get("iscrowd", np.zeros(n))).astype(bool).reshape(-1)
            gt = [np.full(n, image_id), _np(tgt["boxes"]).reshape(-1, 4), _np(tgt["labels"])]
            dt = [np.full(k, image_id), _np(out["boxes"]).reshape(-1, 4), _np(out["scores"])]
            self.ids.append(torch.tensor([image_id], dtype=torch.float64, device=self.device))
            self.gt.append(_row_tensor(*gt, difficult).to(self.device))
            self.dt.append(_row_tensor(*dt, _np(out["labels"])).to(self.device))

    def _unpack(self) -> dict[int, dict[str, np.ndarray]]:
        """Per-image arrays from the (reduced) state; boxes back in float32 as recorded."""
        gt, dt = table(self.gt, 7), table(self.dt, 7)
        ids = np.array(list(dict.fromkeys(table(self.ids, 1)[:, 0].astype(np.int64).tolist())))
        gt_rows, dt_rows = rows_by_image(gt, ids), rows_by_image(dt, ids)
        images = {}
        for image_id in ids.tolist():
            g, d = gt_rows[image_id], dt_rows[image_id]
            images[image_id] = {
                "gt_boxes": gt[g, 1:5].astype(np.float32),
                "gt_labels": gt[g, 5].astype(np.int64),
                "difficult": gt[g, 6].astype(bool),
                "dt_boxes": dt[d, 1:5].astype(np.float32),
                "scores": dt[d, 5],
                "dt_labels": dt[d, 6].astype(np.int64),
            }
        return images

    def _labels(self) -> list[int]:
        if self.class_names:
            return list(range(1, len(self.class_names) + 1))
        return sorted({int(x) for r in self.images.values() for x in r["gt_labels"]})

    def per_class(self) -> list[tuple[int, float, float, int]]:
        """(label, all-point AP, 11-point AP, number of non-difficult gt) per class."""
        rows = []
        for c in self._labels():
            scores, flags, npos = [], [], 0
            for r in self.images.values():
                g, d = r["gt_labels"] == c, r["dt_labels"] == c
                npos += int((~r["difficult"][g]).sum())
                flags.append(
                    match_image(
                        r["gt_boxes"][g],
                        r["difficult"][g],
                        r["dt_boxes"][d],
                        r["scores"][d],
                        self.cfg.iou_threshold,
                    )
                )
                scores.append(r["scores"][d])
            rows.append((c, *self._ap(np.concatenate(scores), np.concatenate(flags), npos), npos))
        return rows

    @staticmethod
    def _ap(scores: np.ndarray, flags: np.ndarray, npos: int) -> tuple[float, float]:
        if npos == 0:
            return float("nan"), float("nan")
        keep = flags >= 0
        order = np.argsort(-scores[keep], kind="stable")
        tp = np.cumsum(flags[keep][order] == 1)
        fp = np.cumsum(flags[keep][order] == 0)
        recall = tp / npos
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        return ap_all_point(recall, precision), ap_11_point(recall, precision)

    def compute(self) -> dict[str, float]:
        """``voc/mAP`` (all-point) and ``voc/mAP11`` (11-point); -1 without any gt."""
        self.images = self._unpack()
        self._rows = self.per_class()
        rows = [r for r in self._rows if r[3] > 0]
        if not rows:
            return {"voc/mAP": -1.0, "voc/mAP11": -1.0}
        return {
            "voc/mAP": float(np.mean([r[1] for r in rows])),
            "voc/mAP11": float(np.mean([r[2] for r in rows])),
        }

    def summary(self) -> str:
        """mAP and a per-class table (AP all-point, AP 11-point, #gt)."""
        res = self.compute()
        lines = [
            f"VOC AP @ IoU>{self.cfg.iou_threshold:g} ({len(self.images)} images): "
            f"mAP {res['voc/mAP']:.4f}, mAP11 {res['voc/mAP11']:.4f}",
            f"{'class':<20} {'AP':>7} {'AP11':>7} {'#gt':>7}",
        ]
        for c, ap, ap11, n in self._rows:
            name = self.class_names[c - 1] if 1 <= c <= len(self.class_names) else str(c)
            lines.append(f"{name:<20} {ap:>7.4f} {ap11:>7.4f} {n:>7d}")
        return "\n".join(lines)
