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
    ``(h, w)``. Detections come best first.
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
        logits, boxes = predictions["logits"], predictions["boxes"]
        if self.cfg.score == "softmax":
            probs = logits.softmax(-1)[..., 1:]
        else:
            probs = logits.sigmoid()
        b, q, c = probs.shape
        if self.cfg.select == "per_query":
            scores, columns = probs.max(-1)
            scores, order = scores.sort(dim=1, descending=True, stable=True)
            query = order
            columns = columns.gather(1, order)
        else:
            k = min(self.cfg.topk, q * c)
            scores, flat = probs.flatten(1).topk(k, dim=1)
            query, columns = flat // c, flat % c
        size = from_host([[w, h, w, h] for h, w in image_sizes], device=boxes.device)
        xyxy = box_convert(boxes, "cxcywh", "xyxy") * size[:, None, :].to(boxes.dtype)
        picked = xyxy.gather(1, query[..., None].expand(-1, -1, 4))
        out = []
        for i in range(b):
            keep = scores[i] >= self.cfg.score_threshold if self.cfg.score_threshold else None
            s, lab, box = scores[i], columns[i] + 1, picked[i]
            if keep is not None:
                s, lab, box = s[keep], lab[keep], box[keep]
            out.append({"boxes": box, "scores": s, "labels": lab})
        return out
