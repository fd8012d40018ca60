"""Dense detections scored per level: ``level_topk_nms`` (RetinaNet, FCOS) and ``yolo_nms``.

Both end in ``batching.select_nms``: candidates (image, box, score, label) → one
``batched_nms_on_device`` over (image, class) groups → the best ``detections_per_img`` of
each image.

``level_topk_nms`` has torchvision ``RetinaNet.postprocess_detections`` /
``FCOS.postprocess_detections`` semantics: per level, scores (sigmoid of the class logits, or
``sqrt(σ(cls)·σ(centerness))`` with ``centerness: true``) above ``score_thresh``, the best
``topk_candidates`` (scores, flattened over anchors × classes), boxes decoded and clipped; then
class-wise NMS per image. ``yolo_nms`` scores objectness × class probability over all levels.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch

from anchorage.core.interfaces import (
    Anchors,
    DensePostprocessConfig,
    DensePostprocessor,
    ObjectnessLayout,
)
from anchorage.core.registry import POSTPROCESSORS
from anchorage.plugins.postprocess import fields
from anchorage.plugins.postprocess.batching import (
    clip_boxes,
    image_bounds,
    select_nms,
    sorted_counts,
)
from anchorage.plugins.postprocess.padded import anchor_strides, clip_to, padded_nms, stable_topk


def _decode_clipped(
    box_coder: Any,
    deltas: torch.Tensor,
    anchors: Anchors,
    img: torch.Tensor,
    anchor: torch.Tensor,
    image_sizes: list[tuple[int, int]],
) -> torch.Tensor:
    """The candidates' boxes: ``deltas [B,A,4]`` at (``img``, ``anchor``) (int64, same shape
    ``[...]``, ``anchor`` indexing all levels) decoded against their anchors (with their
    strides), clipped to their image. Returns xyxy ``[...,4]``."""
    refs, strides = anchors.boxes, anchors.anchor_strides()
    ref = refs[anchor] if refs.dim() == 2 else refs[img, anchor]
    stride = None if strides is None else strides[anchor]
    boxes = box_coder.decode(deltas[img, anchor], ref, stride)
    return clip_boxes(boxes, image_bounds(image_sizes, boxes)[img])


def _gather_decoded(
    box_coder: Any,
    deltas: torch.Tensor,
    anchors: Anchors,
    anchor: torch.Tensor,
    image_size: tuple[int, int],
) -> torch.Tensor:
    """``_decode_clipped`` for a padded batch: ``anchor [B,k]`` int64 → boxes ``[B,k,4]``
    decoded against their anchors and clipped to the one ``image_size`` of the batch."""
    refs, strides = anchors.boxes, anchor_strides(anchors)
    if refs.dim() == 2:
        ref = refs[anchor]
    else:
        ref = refs.gather(1, anchor[..., None].expand(-1, -1, 4))
    stride = None if strides is None else strides[anchor]
    picked = deltas.gather(1, anchor[..., None].expand(-1, -1, 4))
    return clip_to(box_coder.decode(picked, ref, stride), image_size)


@POSTPROCESSORS.register(
    "level_topk_nms",
    examples=({}, {"centerness": True, "score_thresh": 0.2, "nms_thresh": 0.6}),
)
class LevelTopkNMS(DensePostprocessor):
    """Per-level top-k of sigmoid scores, decode, clip, class-wise NMS (see module docstring).

    ``predictions``: ``cls_logits [B,A,C]``, or ``[B,A,C+1]`` with ``background_column: true``
    (column j scores label j as in torchvision's heads; column 0 is never a detection),
    ``bbox_deltas [B,A,4]`` and, with ``centerness``, ``centerness [B,A,1]``; ``anchors``
    the ``Anchors`` (levels from ``num_per_level``). Returns B dicts ``boxes [K,4]``,
    ``scores [K]``, ``labels [K]`` in 1..C.
    """

    @classmethod
    def extra_keys(cls, cfg: Any) -> dict[str, tuple[int, ...]]:
        return {"centerness": (1,)} if cfg.centerness else {}

    @attrs.frozen(kw_only=True)
    class Config(DensePostprocessConfig):
        score_thresh: float = fields.score_thresh(0.05)
        nms_thresh: float = fields.nms_thresh(0.5)
        topk_candidates: int = fields.topk_candidates(1000)
        detections_per_img: int = fields.detections_per_img(300)
        centerness: bool = False
        background_column: bool = False

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.box_coder = cfg.box_coder

    def __call__(
        self,
        predictions: dict[str, torch.Tensor],
        anchors: Anchors,
        image_sizes: list[tuple[int, int]],
    ) -> list[dict[str, torch.Tensor]]:
        counts = anchors.num_per_level
        logits = predictions["cls_logits"]
        if self.cfg.background_column:
            logits = logits[..., 1:]
        ctrs = (
            predictions["centerness"].split(counts, 1)
            if self.cfg.centerness
            else [None] * len(counts)
        )
        parts = [
            self._level(lg, ct, d, r, image_sizes)
            for lg, ct, d, r in zip(
                logits.split(counts, 1),
                ctrs,
                predictions["bbox_deltas"].split(counts, 1),
                anchors.split_levels(),
            )
        ]
        img, boxes, top, col = (torch.cat(p, 0) for p in zip(*parts))
        return select_nms(
            img, boxes, top, col + 1, logits.shape[::2], self.cfg.nms_thresh,
            self.cfg.detections_per_img,
        )  # fmt: skip

    def export_detections(
        self, predictions: dict[str, torch.Tensor], anchors: Anchors, image_size: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """The same detections in the fixed layout of an exported graph (``padded.padded_nms``):
        per level the best ``topk_candidates`` of all scores, ``-inf`` below the threshold."""
        counts = anchors.num_per_level
        logits = predictions["cls_logits"]
        if self.cfg.background_column:
            logits = logits[..., 1:]
        c = logits.shape[-1]
        ctrs = (
            predictions["centerness"].split(counts, 1)
            if self.cfg.centerness
            else [None] * len(counts)
        )
        parts = []
        for lg, ct, d, r in zip(
            logits.split(counts, 1), ctrs, predictions["bbox_deltas"].split(counts, 1),
            anchors.split_levels(),
        ):  # fmt: skip
            score = lg.float().sigmoid()
            if ct is not None:
                score = torch.sqrt(score * ct.float().sigmoid())
            score = torch.where(score > self.cfg.score_thresh, score, float("-inf"))
            flat = score.reshape(score.shape[0], -1)  # [B,A_l*C], anchor-major as eager
            top, idx = stable_topk(flat, min(self.cfg.topk_candidates, flat.shape[1]))
            boxes = _gather_decoded(self.box_coder, d.float(), r, idx // c, image_size)
            parts.append((boxes, top, idx % c + 1))
        boxes, top, label = (torch.cat(p, 1) for p in zip(*parts))
        return padded_nms(
            boxes, top, label, c + 1, self.cfg.nms_thresh, self.cfg.detections_per_img
        )

    def _level(
        self,
        logits: torch.Tensor,
        centerness: torch.Tensor | None,
        deltas: torch.Tensor,
        anchors: Anchors,
        image_sizes: list[tuple[int, int]],
    ) -> tuple[torch.Tensor, ...]:
        """One level's candidates: image index, clipped boxes, scores, class column.

        ``logits [B,A,C]``. Thresholds first (usually few candidates pass), then takes each
        image's best ``topk_candidates`` with one top-k over the survivors padded per image.
        The threshold is tested on the logits (the sigmoid is monotonic, and the score is at
        most σ(logit) with centerness), so only the candidates get a sigmoid; their exact
        scores are then tested again, so the result is that of thresholding every score.
        """
        b, a, c = logits.shape
        img, anchor, col = (logits > self._logit_floor).nonzero(as_tuple=True)  # image-major
        if img.numel() == 0:  # the size is on the host already (nonzero): skip the rest
            empty = deltas.new_zeros((0, 4), dtype=torch.float32)
            return img, empty, empty[:, 0], col
        score = logits[img, anchor, col].float().sigmoid()
        if centerness is not None:
            score = torch.sqrt(score * centerness[img, anchor, 0].float().sigmoid())
        score = torch.where(score > self.cfg.score_thresh, score, float("-inf"))
        counts = sorted_counts(img, b)
        starts = counts.cumsum(0) - counts
        width = int(counts.max()) if b and len(img) else 0  # final-output stage: one sync/level
        padded = score.new_full((b, width), float("-inf"))
        padded[img, torch.arange(len(img), device=img.device) - starts[img]] = score
        top, pos = stable_topk(padded, min(self.cfg.topk_candidates, width))  # [B,k] sorted
        keep = torch.isfinite(top)
        img = torch.arange(b, device=logits.device)[:, None].expand_as(pos)[keep]
        chosen = (starts[:, None] + pos)[keep]
        anchor, col, top = anchor[chosen], col[chosen], top[keep]
        boxes = _decode_clipped(self.box_coder, deltas.float(), anchors, img, anchor, image_sizes)
        return img, boxes, top, col

    @property
    def _logit_floor(self) -> float:
        """A logit below which no score passes ``score_thresh`` (with a margin for rounding)."""
        t = self.cfg.score_thresh**2 if self.cfg.centerness else self.cfg.score_thresh
        if t <= 0.0:
            return float("-inf")
        if t >= 1.0:
            return float("inf")
        return math.log(t / (1.0 - t)) - 1e-3


@POSTPROCESSORS.register("yolo_nms", examples=({}, {"score_thresh": 0.1, "nms_thresh": 0.5}))
class YoloNMS(ObjectnessLayout, DensePostprocessor):
    """YOLO inference: ``σ(objectness) · σ(class)``, threshold, top-k, class-wise NMS.

    ``predictions``: ``objectness [B,A]``, ``cls_logits [B,A,C]``, ``bbox_deltas [B,A,4]`` (the
    injected coder decodes them against the ``anchors`` at their strides). Per image the best
    ``topk_candidates`` (anchor, class) scores above ``score_thresh`` are kept, boxes clipped,
    then NMS removes a box overlapping a better one of its class at IoU > ``nms_thresh``.
    Returns B dicts ``boxes [K,4]``, ``scores [K]``, ``labels [K]`` in 1..C, sorted by score.
    """

    @attrs.frozen(kw_only=True)
    class Config(DensePostprocessConfig):
        score_thresh: float = fields.score_thresh(0.05)
        nms_thresh: float = fields.nms_thresh(0.6)
        topk_candidates: int = fields.topk_candidates(1000)
        detections_per_img: int = fields.detections_per_img(100)

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.box_coder = cfg.box_coder

    def __call__(
        self,
        predictions: dict[str, torch.Tensor],
        anchors: Anchors,
        image_sizes: list[tuple[int, int]],
    ) -> list[dict[str, torch.Tensor]]:
        return self._detect(predictions, anchors, image_sizes, None)

    def export_detections(
        self, predictions: dict[str, torch.Tensor], anchors: Anchors, image_size: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """The same detections in the fixed layout of an exported graph (``padded.padded_nms``)."""
        return self._detect(predictions, anchors, [image_size], image_size)

    def _detect(
        self,
        predictions: dict[str, torch.Tensor],
        anchors: Anchors,
        image_sizes: list[tuple[int, int]],
        export_size: tuple[int, int] | None,
    ) -> Any:
        obj = predictions["objectness"].float().sigmoid()
        scores = obj[..., None] * predictions["cls_logits"].float().sigmoid()  # [B,A,C]
        b, a, c = scores.shape
        top, idx = stable_topk(scores.reshape(b, a * c), min(self.cfg.topk_candidates, a * c))
        anchor, label = idx // c, idx % c + 1
        deltas = predictions["bbox_deltas"].float()
        keep = top > self.cfg.score_thresh
        if export_size is not None:  # fixed layout: no boolean-mask indexing
            return padded_nms(
                _gather_decoded(self.box_coder, deltas, anchors, anchor, export_size),
                torch.where(keep, top, float("-inf")), label, c + 1, self.cfg.nms_thresh,
                self.cfg.detections_per_img,
            )  # fmt: skip
        img = torch.arange(b, device=scores.device)[:, None].expand_as(top)
        boxes = _decode_clipped(self.box_coder, deltas, anchors, img, anchor, image_sizes)
        return select_nms(
            img[keep], boxes[keep], top[keep], label[keep], (b, c), self.cfg.nms_thresh,
            self.cfg.detections_per_img,
        )  # fmt: skip
