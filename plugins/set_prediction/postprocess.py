"""``set_topk``: a set detector's last-layer predictions → detections, without NMS.

One-to-one matching trains each object onto one query, so duplicates are rare and no NMS runs.
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from torchvision.ops import box_convert

from anchorage.core.host_sync import from_host
from anchorage.core.interfaces import SetPostprocessor
from anchorage.core.registry import POSTPROCESSORS
from anchorage.plugins.postprocess.padded import stable_topk


@POSTPROCESSORS.register(
    "set_topk",
    examples=({}, {"score": "sigmoid", "select": "topk", "topk": 7}),
)
class SetTopK(SetPostprocessor):
    """Scores, then the kept (query, class) pairs, boxes scaled to batch-tensor pixels.

    ``score: softmax`` reads ``logits [B,Q,C+1]`` (column 0 no-object, dropped after the
    softmax); ``sigmoid`` reads ``[B,Q,C]``. ``select: per_query`` keeps each query's best
    class (DETR's postprocess: Q detections); ``topk`` keeps the ``topk`` best pairs over all
    queries × classes (Deformable DETR's: a query may give several classes). Pairs scoring
    below ``score_threshold`` are dropped. Boxes: cxcywh 0..1 → xyxy pixels of each image's
    ``(h, w)``. Detections come best first (equal scores in query, then class order).
    ``export_detections`` gives the same detections in the padded layout of an exported graph.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        score: Literal["softmax", "sigmoid"] = "softmax"
        select: Literal["per_query", "topk"] = "per_query"
        topk: int = attrs.field(default=100, validator=attrs.validators.ge(1))
        score_threshold: float = attrs.field(
            default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)]
        )

    @classmethod
    def background_column(cls, cfg: Config) -> bool:
        return cfg.score == "softmax"

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def __call__(  # type: ignore[override]
        self, predictions: dict[str, torch.Tensor], image_sizes: list[tuple[int, int]]
    ) -> list[dict[str, torch.Tensor]]:
        boxes = predictions["boxes"]
        size = from_host([[w, h, w, h] for h, w in image_sizes], device=boxes.device)
        picked, scores, labels = self._ranked(predictions, size[:, None, :].to(boxes.dtype))
        out = []
        for i in range(len(image_sizes)):
            s, lab, box = scores[i], labels[i], picked[i]
            if self.cfg.score_threshold:
                keep = s >= self.cfg.score_threshold
                s, lab, box = s[keep], lab[keep], box[keep]
            out.append({"boxes": box, "scores": s, "labels": lab})
        return out

    def export_detections(
        self, predictions: dict[str, torch.Tensor], image_size: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """The same detections in the fixed layout of an exported graph (``DETECTION_OUTPUTS``
        of ``postprocess.padded``; every image of the batch is ``image_size`` ``(h, w)``):
        ``boxes [B,D,4]`` xyxy batch pixels, ``scores [B,D]``, ``labels [B,D]`` int64,
        ``num_detections [B]`` int64, D = Q (``per_query``) or ``min(topk, Q*C)``. Detections
        below ``score_threshold`` are the rows from ``num_detections`` on, zeros (label 0)."""
        h, w = image_size
        boxes = predictions["boxes"]
        size = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
        picked, scores, labels = self._ranked(predictions, size)
        keep = scores >= self.cfg.score_threshold  # scores are sorted: a prefix of each row
        return {
            "boxes": torch.where(keep[..., None], picked, 0),
            "scores": torch.where(keep, scores, 0),
            "labels": torch.where(keep, labels, 0),
            "num_detections": keep.sum(dim=1),
        }

    def _ranked(
        self, predictions: dict[str, torch.Tensor], scale: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every kept (query, class) pair of every image, best first (equal scores in query
        and class order, eager as exported: ``stable_topk``): xyxy boxes ``[B,D,4]`` (the
        cxcywh 0..1 boxes times ``scale``, ``[w,h,w,h]`` broadcast to ``[B,1,4]``), scores
        ``[B,D]`` and labels ``[B,D]`` int64 in 1..C."""
        logits, boxes = predictions["logits"], predictions["boxes"]
        if self.cfg.score == "softmax":
            probs = logits.softmax(-1)[..., 1:]
        else:
            probs = logits.sigmoid()
        _, q, c = probs.shape
        if self.cfg.select == "per_query":
            best, columns = probs.max(-1)
            scores, query = stable_topk(best, q)
            columns = columns.gather(1, query)
        else:
            scores, flat = stable_topk(probs.flatten(1), min(self.cfg.topk, q * c))
            query, columns = flat // c, flat % c
        xyxy = box_convert(boxes, "cxcywh", "xyxy") * scale
        picked = xyxy.gather(1, query[..., None].expand(-1, -1, 4))
        return picked, scores, columns + 1
