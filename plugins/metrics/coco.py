"""``coco_bbox`` and ``coco_segm``: COCO mAP through pycocotools' COCOeval.

The ground truth is built from the targets seen (``image_id``, ``boxes`` xyxy, ``labels`` as
category ids, ``iscrowd``, ``area``, and ``masks`` for segm), the results from the model
outputs; images without predictions and images without ground truth both take part, as
in a direct COCOeval call on the same data. ``compute`` returns the 12 COCO summary numbers
(``bbox/AP``, ``bbox/AP50``, ``bbox/AP75``, ``bbox/APs``, ``bbox/APm``, ``bbox/APl``,
``bbox/AR1``, ``bbox/AR10``, ``bbox/AR100``, ``bbox/ARs``, ``bbox/ARm``, ``bbox/ARl``; ``segm/``
for masks); ``summary`` prints them and a per-class AP / AP50 table. Undefined numbers
(e.g. no ground truth of a size) are -1, as pycocotools reports them.

State: ``torchmetrics`` list states of float64 rows, concatenated across ranks before
``compute`` (each image is evaluated on one rank; an image id seen twice on a rank keeps its
first record): images ``(id, h, w)``, ground truth ``(id, x1, y1, x2, y2, label, iscrowd,
area)``, detections ``(id, x1, y1, x2, y2, score, label)``; for ``segm`` the RLE strings as
bytes with one ``(length, h, w)`` row per mask. pycocotools computes the numbers. ``backend:
faster_coco_eval`` computes the same numbers with the optional faster-coco-eval package
(``benchmarks/results/gpu_readiness_cpu.md``: evaluate + accumulate 10x faster).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any, Literal

import attrs
import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from anchorage.core.config import injected
from anchorage.core.errors import AnchorageError, DataError
from anchorage.core.evaluation import Metric
from anchorage.core.evaluation.state import (
    encode_rle,
    flat,
    pack_rles,
    rows_by_image,
    table,
    unpack_rles,
)
from anchorage.core.registry import METRICS

STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().as_subclass(torch.Tensor).numpy()
    return np.asarray(x)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """[N,4] xyxy → [N,4] COCO xywh (float64)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    b[:, 2:] -= b[:, :2]
    return b


@attrs.frozen(kw_only=True)
class CocoConfig:
    class_names: tuple[str, ...] = injected(default=())
    mask_threshold: float = attrs.field(
        default=0.5, validator=[attrs.validators.gt(0.0), attrs.validators.lt(1.0)]
    )
    backend: Literal["pycocotools", "faster_coco_eval"] = "pycocotools"


def coco_backend(name: str) -> tuple[type, type]:
    """(COCO class, COCOeval class) of a backend: ``pycocotools``, or ``faster_coco_eval``
    (the package ``faster-coco-eval``: the same 12 numbers, its C++ evaluate/accumulate)."""
    if name == "pycocotools":
        return COCO, COCOeval
    try:
        from faster_coco_eval import COCO as FastCOCO
        from faster_coco_eval import COCOeval_faster
    except ImportError:
        raise AnchorageError(
            "coco metric: backend faster_coco_eval needs the package faster-coco-eval "
            "(pip install 'anchorage[fast-eval]'), which is not installed"
        ) from None
    return FastCOCO, COCOeval_faster


_ROWS = {"images": 3, "gt": 8, "dt": 7, "gt_rle_meta": 3, "dt_rle_meta": 3}


class CocoMetric(Metric):
    """COCOeval over accumulated per-image ground truth and detections."""

    iou_type = "bbox"

    def __init__(self, cfg: CocoConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self._coco, self._cocoeval = coco_backend(cfg.backend)
        self.class_names = list(cfg.class_names)
        for name in ("images", "gt", "dt"):
            self.add_state(name, [], dist_reduce_fx="cat")
        if self.iou_type == "segm":
            for name in ("gt_rle", "gt_rle_meta", "dt_rle", "dt_rle_meta"):
                self.add_state(name, [], dist_reduce_fx="cat")
        self._reset_local()

    def _reset_local(self) -> None:
        self._seen: set[int] = set()
        self.records: dict[int, dict[str, Any]] = {}
        self._eval: COCOeval | None = None

    def reset(self) -> None:
        """Forget every image (and the last result)."""
        super().reset()
        self._reset_local()

    def update(self, outputs: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]]) -> None:
        """Record one batch; an image id seen twice keeps its first record."""
        for out, tgt in zip(outputs, targets):
            image_id = int(tgt["image_id"])
            if image_id in self._seen:
                continue
            self._seen.add(image_id)
            self._append(image_id, self._gt(tgt), self._dt(out))

    def _append(self, image_id: int, gt: dict[str, Any], dt: dict[str, Any]) -> None:
        def rows(*columns: Any) -> torch.Tensor:
            return torch.as_tensor(np.column_stack(columns), dtype=torch.float64).to(self.device)

        n, k = len(gt["labels"]), len(dt["labels"])
        self.images.append(rows([image_id], [gt["size"][0]], [gt["size"][1]]))
        self.gt.append(
            rows(np.full(n, image_id), gt["boxes"], gt["labels"], gt["iscrowd"], gt["area"])
        )
        self.dt.append(rows(np.full(k, image_id), dt["boxes"], dt["scores"], dt["labels"]))
        if self.iou_type == "segm":
            for key, rles in (("gt", gt["masks"]), ("dt", dt["masks"])):
                data, meta = pack_rles(rles)
                getattr(self, f"{key}_rle").append(data.to(self.device))
                getattr(self, f"{key}_rle_meta").append(meta.to(self.device))

    def _gt(self, tgt: dict[str, Any]) -> dict[str, Any]:
        missing = [k for k in ("image_id", "boxes", "labels") if k not in tgt]
        if self.iou_type == "segm" and "masks" not in tgt:
            missing.append("masks")
        if missing:
            raise DataError(f"coco_{self.iou_type}: targets lack {missing} (keys {sorted(tgt)})")
        boxes = _np(tgt["boxes"]).astype(np.float64).reshape(-1, 4)
        n = len(boxes)
        wh = boxes[:, 2:] - boxes[:, :2]
        gt = {
            "boxes": boxes,
            "labels": _np(tgt["labels"]).astype(np.int64).reshape(-1),
            "iscrowd": _np(tgt.get("iscrowd", np.zeros(n))).astype(np.int64).reshape(-1),
            "area": _np(tgt["area"]).astype(np.float64).reshape(-1)
            if "area" in tgt
            else wh[:, 0] * wh[:, 1],
            "size": self._size(tgt),
        }
        if self.iou_type == "segm":
            gt["masks"] = encode_rle(tgt["masks"])
        return gt

    def _dt(self, out: dict[str, Any]) -> dict[str, Any]:
        needed = ("boxes", "scores", "labels", *(("masks",) if self.iou_type == "segm" else ()))
        missing = [k for k in needed if k not in out]
        if missing:
            raise DataError(f"coco_{self.iou_type}: outputs lack {missing} (keys {sorted(out)})")
        dt = {
            "boxes": _np(out["boxes"]).astype(np.float64).reshape(-1, 4),
            "scores": _np(out["scores"]).astype(np.float64).reshape(-1),
            "labels": _np(out["labels"]).astype(np.int64).reshape(-1),
        }
        if self.iou_type == "segm":
            dt["masks"] = encode_rle(out["masks"], self.cfg.mask_threshold)
        return dt

    @staticmethod
    def _size(tgt: dict[str, Any]) -> tuple[int, int]:
        if "masks" in tgt:
            return tuple(int(s) for s in tgt["masks"].shape[-2:])
        canvas = getattr(tgt["boxes"], "canvas_size", None)
        return tuple(canvas) if canvas is not None else tuple(tgt.get("orig_size", (0, 0)))

    def _unpack(self) -> dict[int, dict[str, Any]]:
        """Per-image ground truth and detections (numpy, RLE dicts) from the (reduced) state."""
        state = {
            name: table(getattr(self, name), width)
            for name, width in _ROWS.items()
            if hasattr(self, name)
        }
        gt, dt = state["gt"], state["dt"]
        masks = {}
        if self.iou_type == "segm":
            masks = {
                key: unpack_rles(flat(getattr(self, f"{key}_rle")), state[f"{key}_rle_meta"])
                for key in ("gt", "dt")
            }
        records: dict[int, dict[str, Any]] = {}
        images = state["images"].astype(np.int64)
        gt_rows, dt_rows = rows_by_image(gt, images[:, 0]), rows_by_image(dt, images[:, 0])
        for image_id, h, w in images.tolist():
            g, d = gt_rows[image_id], dt_rows[image_id]
            rec = {
                "gt": {
                    "boxes": gt[g, 1:5],
                    "labels": gt[g, 5].astype(np.int64),
                    "iscrowd": gt[g, 6].astype(np.int64),
                    "area": gt[g, 7],
                    "size": (h, w),
                },
                "dt": {
                    "boxes": dt[d, 1:5],
                    "scores": dt[d, 5],
                    "labels": dt[d, 6].astype(np.int64),
                },
            }
            if masks:
                rec["gt"]["masks"] = [masks["gt"][j] for j in g]
                rec["dt"]["masks"] = [masks["dt"][j] for j in d]
            records.setdefault(image_id, rec)
        return records

    def category_ids(self) -> list[int]:
        """Category ids: 1..C from ``class_names``, else every label seen."""
        if self.class_names:
            return list(range(1, len(self.class_names) + 1))
        seen = set()
        for rec in self.records.values():
            seen.update(rec["gt"]["labels"].tolist())
            seen.update(rec["dt"]["labels"].tolist())
        return sorted(seen)

    def coco_gt(self) -> COCO:
        """A pycocotools COCO object of the accumulated ground truth."""
        cats = [{"id": c, "name": self._name(c)} for c in self.category_ids()]
        images, anns = [], []
        for image_id, rec in sorted(self.records.items()):
            gt = rec["gt"]
            h, w = gt["size"]
            images.append({"id": image_id, "height": h, "width": w})
            for j, xywh in enumerate(xyxy_to_xywh(gt["boxes"])):
                ann = {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": int(gt["labels"][j]),
                    "bbox": xywh.tolist(),
                    "area": float(gt["area"][j]),
                    "iscrowd": int(gt["iscrowd"][j]),
                }
                if self.iou_type == "segm":
                    ann["segmentation"] = gt["masks"][j]
                anns.append(ann)
        coco = self._coco()
        coco.dataset = {"images": images, "annotations": anns, "categories": cats}
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco

    def results(self) -> list[dict[str, Any]]:
        """Detections in COCO results format (xywh boxes, category ids = labels)."""
        out = []
        for image_id, rec in sorted(self.records.items()):
            dt = rec["dt"]
            for j, xywh in enumerate(xyxy_to_xywh(dt["boxes"])):
                res = {
                    "image_id": image_id,
                    "category_id": int(dt["labels"][j]),
                    "bbox": xywh.tolist(),
                    "score": float(dt["scores"][j]),
                }
                if self.iou_type == "segm":
                    res["segmentation"] = dt["masks"][j]
                out.append(res)
        return out

    def _name(self, cat: int) -> str:
        if 1 <= cat <= len(self.class_names):
            return self.class_names[cat - 1]
        return str(cat)

    def compute(self) -> dict[str, float]:
        """The 12 COCO summary numbers under ``<iou_type>/<name>`` keys."""
        prefix = self.iou_type
        self.records = self._unpack()
        self._eval = None
        if not self.records:
            return {f"{prefix}/{n}": -1.0 for n in STAT_NAMES}
        gt = self.coco_gt()
        dets = self.results()
        with contextlib.redirect_stdout(io.StringIO()) as text:
            dt = gt.loadRes(dets) if dets else _empty_results(gt, self._coco)
            coco_eval = self._cocoeval(gt, dt, iouType=self.iou_type)
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        self._eval = coco_eval
        self._text = "\n".join(
            line for line in text.getvalue().splitlines() if line.lstrip().startswith("Average")
        )
        return {f"{prefix}/{n}": float(v) for n, v in zip(STAT_NAMES, coco_eval.stats)}

    def per_class(self) -> list[tuple[str, float, float, int]]:
        """(class name, AP, AP50, number of non-crowd gt) per category; AP -1 when undefined."""
        self.compute()
        if self._eval is None:
            return []
        precision = self._eval.eval["precision"]  # [T, R, K, A, M]
        rows = []
        for k, cat in enumerate(self._eval.params.catIds):
            p_all = precision[:, :, k, 0, -1]
            p50 = precision[0, :, k, 0, -1]
            ap = float(p_all[p_all > -1].mean()) if (p_all > -1).any() else -1.0
            ap50 = float(p50[p50 > -1].mean()) if (p50 > -1).any() else -1.0
            n_gt = sum(
                int(((rec["gt"]["labels"] == cat) & (rec["gt"]["iscrowd"] == 0)).sum())
                for rec in self.records.values()
            )
            rows.append((self._name(cat), ap, ap50, n_gt))
        return rows

    def summary(self) -> str:
        """pycocotools' 12-line summary and a per-class AP table."""
        self.compute()
        if self._eval is None:
            return f"{self.iou_type}: no images evaluated"
        lines = [f"COCO {self.iou_type} ({len(self.records)} images)", self._text.rstrip()]
        lines.append(f"{'class':<20} {'AP':>7} {'AP50':>7} {'#gt':>7}")
        for name, ap, ap50, n in self.per_class():
            lines.append(f"{name:<20} {ap:>7.3f} {ap50:>7.3f} {n:>7d}")
        return "\n".join(lines)


def _empty_results(gt: COCO, coco: type = COCO) -> COCO:
    """An empty results COCO (``loadRes`` cannot take an empty list)."""
    res = coco()
    res.dataset = {
        "images": list(gt.dataset["images"]),
        "categories": gt.dataset["categories"],
        "annotations": [],
    }
    res.createIndex()
    return res


@METRICS.register("coco_bbox", config=CocoConfig, examples=({"class_names": ("a", "b")},))
class CocoBoxMetric(CocoMetric):
    """COCO box mAP (pycocotools COCOeval, iouType 'bbox'): keys ``bbox/AP`` ... ``bbox/ARl``."""

    iou_type = "bbox"


@METRICS.register("coco_segm", config=CocoConfig, examples=({"class_names": ("a", "b")},))
class CocoMaskMetric(CocoMetric):
    """COCO mask mAP (COCOeval, iouType 'segm'): keys ``segm/AP`` ... ``segm/ARl``.

    Needs ``masks`` in targets (uint8 [N,H,W]) and outputs (float [K,1,H,W], thresholded at
    ``mask_threshold``).
    """

    iou_type = "segm"
