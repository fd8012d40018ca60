"""``multiclass_nms``: decode, per-class threshold and top-k, class-wise NMS, top detections.

torchvision SSD ``postprocess_detections`` semantics, vectorized over the batch: the per-class
candidate selection is one ``topk`` over ``[B,C,A]`` and NMS is one ``batched_nms_on_device``
call whose groups are (image, class) pairs (``batched_nms`` on a CPU, one NMS call on a GPU).
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
import torch
import torch.nn.functional as F

from anchorage.core.interfaces import Anchors, DensePostprocessConfig, DensePostprocessor
from anchorage.core.registry import POSTPROCESSORS
from anchorage.plugins.postprocess import fields
from anchorage.plugins.postprocess.batching import clip_boxes, image_bounds, select_nms
from anchorage.plugins.postprocess.padded import anchor_strides, clip_to, padded_nms, stable_topk


@POSTPROCESSORS.register(
    "multiclass_nms",
    examples=({}, {"score": "sigmoid", "score_thresh": 0.05, "detections_per_img": 100}),
)
class MulticlassNMS(DensePostprocessor):
    """Dense predictions → per-image detections.

    ``__call__(predictions, anchors, image_sizes)``: ``predictions`` holds ``cls_logits``
    ``[B,A,C+1]`` (``score: softmax``, column 0 = background) or ``[B,A,C]`` (``sigmoid``)
    and ``bbox_deltas [B,A,4]``; ``anchors`` are the ``Anchors`` the injected ``box_coder``
    decodes against; ``image_sizes`` the ``(h, w)``
    of each image in the batch tensor (boxes are clipped to it when ``clip``). Per image and
    class: scores ``> score_thresh``, the best ``topk_candidates``; then NMS at ``nms_thresh``
    per class and the best ``detections_per_img``. Returns B dicts: ``boxes [K,4]`` xyxy batch
    pixels, ``scores [K]``, ``labels [K]`` int64 in 1..C, sorted by score.
    """

    @classmethod
    def background_column(cls, cfg: Any) -> bool:
        return cfg.score == "softmax"

    @attrs.frozen(kw_only=True)
    class Config(DensePostprocessConfig):
        score_thresh: float = fields.score_thresh(0.01)
        nms_thresh: float = fields.nms_thresh(0.45)
        topk_candidates: int = fields.topk_candidates(400)
        detections_per_img: int = fields.detections_per_img(200)
        score: Literal["softmax", "sigmoid"] = "softmax"
        clip: bool = True

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.box_coder = cfg.box_coder

    def __call__(
        self,
        predictions: dict[str, torch.Tensor],
        anchors: Anchors,
        image_sizes: list[tuple[int, int]],
    ) -> list[dict[str, torch.Tensor]]:
        # float32 whatever the autocast dtype: decoding and NMS need the precision
        logits, deltas = predictions["cls_logits"].float(), predictions["bbox_deltas"].float()
        boxes = self.box_coder.decode(deltas, anchors.boxes, anchors.anchor_strides())  # [B,A,4]
        if self.cfg.clip:
            boxes = clip_boxes(boxes, image_bounds(image_sizes, boxes)[:, None, :])
        if self.cfg.score == "softmax":
            scores = F.softmax(logits, dim=-1)[..., 1:]
        else:
            scores = logits.sigmoid()
        return self._select(boxes, scores)

    def export_detections(
        self, predictions: dict[str, torch.Tensor], anchors: Anchors, image_size: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """The same detections in the fixed layout of an exported graph (``padded.padded_nms``;
        every image of the batch is ``image_size`` ``(h, w)``): no host sync, no data-dependent
        branch."""
        logits, deltas = predictions["cls_logits"].float(), predictions["bbox_deltas"].float()
        boxes = self.box_coder.decode(deltas, anchors.boxes, anchor_strides(anchors))
        if self.cfg.clip:
            boxes = clip_to(boxes, image_size)
        scores = (
            F.softmax(logits, dim=-1)[..., 1:] if self.cfg.score == "softmax" else logits.sigmoid()
        )
        top, idx = self._candidates(scores)  # [B,C,k]
        b, c, k = top.shape
        label = torch.arange(1, c + 1, device=scores.device)[None, :, None].expand(b, c, k)
        chosen = boxes.gather(1, idx.reshape(b, c * k, 1).expand(-1, -1, 4))
        return padded_nms(
            chosen, top.reshape(b, c * k), label.reshape(b, c * k), c + 1, self.cfg.nms_thresh,
            self.cfg.detections_per_img,
        )  # fmt: skip

    def _candidates(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image and class the best ``topk_candidates`` scores above the threshold
        (``-inf`` where fewer pass) and their anchors: ``[B,C,k]`` each, sorted (equal scores
        in anchor order, in eager mode as in an exported graph)."""
        k = min(self.cfg.topk_candidates, scores.shape[1])
        per_class = scores.transpose(1, 2)  # [B,C,A]
        thresholded = per_class.masked_fill(per_class <= self.cfg.score_thresh, float("-inf"))
        return stable_topk(thresholded, k)  # equal scores in anchor order

    def _select(self, boxes: torch.Tensor, scores: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        b, a, c = scores.shape
        top, idx = self._candidates(scores)  # [B,C,k], sorted
        k = top.shape[-1]
        keep = torch.isfinite(top)
        img = torch.arange(b, device=scores.device)[:, None, None].expand(b, c, k)[keep]
        label = torch.arange(1, c + 1, device=scores.device)[None, :, None].expand(b, c, k)[keep]
        return select_nms(
            img, boxes[img, idx[keep]], top[keep], label, (b, c), self.cfg.nms_thresh,
            self.cfg.detections_per_img,
        )  # fmt: skip
