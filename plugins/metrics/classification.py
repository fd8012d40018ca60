"""Classification and localization metrics: ``accuracy`` and ``box_iou``.

``accuracy`` reads each output's ``probs [C]`` (the ``classifier`` and ``localizer``
outputs) and each target's ``label`` (an int64 scalar, ``image_folder``) or, for detection
targets, its first ``labels`` entry (images without one are not counted). Counting is
torchmetrics' (``multiclass_stat_scores`` with ``top_k`` for top-k hits,
``multiclass_confusion_matrix``), kept in summed states, so ranks reduce by one all-reduce.
Keys: ``cls/top1``, ``cls/top5`` (each ``topk``; k capped at C), ``cls/mean_acc`` (mean of
the per-class accuracies of classes that occur); the summary has a row per class. After an
evaluation the confusion matrix is drawn (matplotlib) to ``confusion_matrix.png`` in the
evaluation's picture folder (``write_pictures``).

``box_iou`` (localization): the IoU of each output's first box (the ``localizer`` gives one)
with the target's first box. Keys ``loc/mIoU``, ``loc/IoU50`` (fraction with IoU ≥
``threshold``, 0.5; ``loc/IoU75`` at 0.75) and ``loc/acc`` (the notes' localization accuracy:
right class and IoU ≥ ``threshold``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from torchmetrics.functional.classification import (
    multiclass_confusion_matrix,
    multiclass_stat_scores,
)
from torchvision.ops import box_iou

from anchorage.core.atomic import write_atomically
from anchorage.core.config import injected
from anchorage.core.errors import DataError
from anchorage.core.evaluation import Metric
from anchorage.core.registry import METRICS


def target_label(target: dict[str, Any]) -> int | None:
    """A target's class (1..C): ``label``, else the first of ``labels``; None when it has none."""
    if "label" in target:
        return int(target["label"])
    labels = target.get("labels")
    if isinstance(labels, torch.Tensor) and labels.numel() > 0:
        return int(labels.reshape(-1)[0])
    return None


@attrs.frozen(kw_only=True)
class AccuracyConfig:
    class_names: tuple[str, ...] = injected(default=())
    num_classes: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(1))
    )  # C; default len(class_names)
    topk: tuple[int, ...] = attrs.field(default=(1, 5), validator=attrs.validators.min_len(1))
    picture: bool = True


@METRICS.register("accuracy", config=AccuracyConfig, examples=({"class_names": ("a", "b", "c")},))
class Accuracy(Metric):
    """Top-k accuracy, per-class accuracy and the confusion matrix (see the module docstring)."""

    def __init__(self, cfg: AccuracyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.c = cfg.num_classes or len(cfg.class_names)
        if self.c < 1:
            raise ValueError("accuracy needs class_names (from the dataset) or num_classes")
        self.names = [*cfg.class_names, *map(str, range(len(cfg.class_names) + 1, self.c + 1))]
        self.ks = tuple(min(k, self.c) for k in cfg.topk)
        # rows: target class, columns: top-1 prediction
        zeros = torch.zeros(self.c, self.c, dtype=torch.int64)
        self.add_state("confusion", zeros, dist_reduce_fx="sum")
        self.add_state("hits", torch.zeros(len(self.ks), dtype=torch.int64), dist_reduce_fx="sum")
        self._matrix = zeros

    def update(self, outputs: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]]) -> None:
        """Add one batch: ``probs [C]`` of each output against its target's class."""
        probs, labels = [], []
        for i, (out, t) in enumerate(zip(outputs, targets)):
            if "probs" not in out:
                raise DataError(
                    f"accuracy needs 'probs' [C] in the outputs (a classifier's); image {i} has "
                    f"{sorted(out)}"
                )
            label = target_label(t)
            if label is None:
                continue
            if not 1 <= label <= self.c or out["probs"].shape[-1] != self.c:
                raise DataError(
                    f"accuracy: image {i} has label {label} and {out['probs'].shape[-1]} class "
                    f"probabilities; expected labels 1..{self.c} and {self.c} probabilities"
                )
            probs.append(out["probs"].detach().float().to(self.device))
            labels.append(label - 1)
        if not probs:
            return
        preds = torch.stack(probs)
        target = torch.tensor(labels, device=self.device)
        self.confusion += multiclass_confusion_matrix(preds, target, self.c)
        for j, k in enumerate(self.ks):
            tp = multiclass_stat_scores(preds, target, self.c, top_k=k, average="micro")[0]
            self.hits[j] += tp

    def per_class(self) -> torch.Tensor:
        """Accuracy (recall) per class ``[C]`` from the last computed matrix; NaN where a
        class never occurs."""
        cm = self._matrix.double()
        return torch.diag(cm) / cm.sum(1)

    def compute(self) -> dict[str, float]:
        """``cls/top<k>`` and ``cls/mean_acc`` (-1 before any image)."""
        self._matrix = self.confusion.detach().cpu().clone()  # reduced over ranks here
        total = int(self._matrix.sum())
        out = {f"cls/top{k}": -1.0 if total == 0 else float(h) / total
               for k, h in zip(self.cfg.topk, self.hits.cpu())}  # fmt: skip
        acc = self.per_class()
        out["cls/mean_acc"] = -1.0 if total == 0 else float(acc[~acc.isnan()].mean())
        return out

    def summary(self) -> str:
        """Top-k accuracies and one row per class (images, accuracy)."""
        res = self.compute()
        shown = ", ".join(f"{k.split('/')[1]} {v:.4f}" for k, v in res.items())
        lines = [f"classification: {shown}", f"{'class':<20} {'images':>7} {'acc':>7}"]
        acc, counts = self.per_class(), self._matrix.sum(1)
        for c in range(self.c):
            lines.append(f"{self.names[c]:<20} {int(counts[c]):>7} {float(acc[c]):>7.4f}")
        return "\n".join(lines)

    def write_pictures(self, folder: str | Path) -> list[Path]:
        """``folder/confusion_matrix.png`` of the last computed matrix (counts and row
        fractions); nothing when ``picture`` is off or no image was counted."""
        if not self.cfg.picture or int(self._matrix.sum()) == 0:
            return []
        data = confusion_png(self._matrix, self.names)
        return [write_atomically(Path(folder) / "confusion_matrix.png", lambda f: f.write(data))]


def confusion_png(matrix: torch.Tensor, names: Sequence[str]) -> bytes:
    """A confusion matrix ``[C,C]`` (rows: true class, columns: predicted) drawn as PNG bytes:
    cells coloured by the row fraction, annotated with the count."""
    from matplotlib.figure import Figure

    cm = matrix.double()
    frac = (cm / cm.sum(1, keepdim=True).clamp(min=1)).numpy()
    c = len(names)
    side = min(2.0 + 0.6 * c, 16.0)
    fig = Figure(figsize=(side + 1.5, side))
    ax = fig.add_subplot()
    shown = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(c), labels=list(names), rotation=45, ha="right")
    ax.set_yticks(range(c), labels=list(names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if c <= 30:
        for i in range(c):
            for j in range(c):
                colour = "white" if frac[i, j] > 0.5 else "black"
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", color=colour)
    ax.set_title(f"confusion matrix ({int(cm.sum())} images)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


@attrs.frozen(kw_only=True)
class BoxIoUConfig:
    class_names: tuple[str, ...] = injected(default=())
    threshold: float = attrs.field(
        default=0.5, validator=[attrs.validators.gt(0.0), attrs.validators.le(1.0)]
    )


@METRICS.register("box_iou", config=BoxIoUConfig)
class BoxIoU(Metric):
    """IoU of each image's first predicted box with its first gt box (module docstring)."""

    def __init__(self, cfg: BoxIoUConfig) -> None:
        super().__init__()
        self.cfg = cfg
        for name, dtype in (("iou_sum", torch.float64), ("hits", torch.int64),
                            ("correct", torch.int64), ("count", torch.int64)):  # fmt: skip
            self.add_state(name, torch.zeros((), dtype=dtype), dist_reduce_fx="sum")

    def update(self, outputs: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]]) -> None:
        """Add one batch: images with a gt box count; no predicted box is IoU 0."""
        for i, (out, t) in enumerate(zip(outputs, targets)):
            gt = t.get("boxes")
            if gt is None or "boxes" not in out:
                raise DataError(
                    f"box_iou needs 'boxes' in outputs and targets; image {i} has outputs "
                    f"{sorted(out)} and targets {sorted(t)}"
                )
            gt = gt.reshape(-1, 4)
            if gt.shape[0] == 0:
                continue
            pred = out["boxes"].reshape(-1, 4)[:1].float().to(self.device)
            iou = box_iou(pred, gt[:1].float().to(self.device)).reshape(-1)
            value = iou[0].double() if iou.numel() else torch.zeros((), dtype=torch.float64)
            hit = value >= self.cfg.threshold
            predicted, truth = out["labels"].reshape(-1)[:1], t["labels"].reshape(-1)[:1]
            same = torch.equal(predicted.cpu(), truth.cpu())
            self.iou_sum += value.to(self.iou_sum.device)
            self.hits += hit.long().to(self.hits.device)
            self.correct += (hit & same).long().to(self.correct.device)
            self.count += 1

    @property
    def hit_key(self) -> str:
        """``loc/IoU50`` for the default threshold 0.5 (``loc/IoU75`` for 0.75, ...)."""
        return f"loc/IoU{round(self.cfg.threshold * 100)}"

    def compute(self) -> dict[str, float]:
        """``loc/mIoU``, ``loc/IoU50``, ``loc/acc`` (-1 before any image)."""
        n = int(self.count)
        if n == 0:
            return {"loc/mIoU": -1.0, self.hit_key: -1.0, "loc/acc": -1.0}
        return {
            "loc/mIoU": float(self.iou_sum) / n,
            self.hit_key: int(self.hits) / n,
            "loc/acc": int(self.correct) / n,
        }

    def summary(self) -> str:
        """One line with the three numbers and the image count."""
        res = self.compute()
        t = self.cfg.threshold
        return (
            f"localization ({int(self.count)} images): mIoU {res['loc/mIoU']:.4f}, "
            f"IoU>={t:.2f} {res[self.hit_key]:.4f}, class right and IoU>={t:.2f} "
            f"{res['loc/acc']:.4f}"
        )
