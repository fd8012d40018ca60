"""R-CNN detection postprocessing (``rcnn_detections``): torchvision's
``RoIHeads.postprocess_detections`` over the whole padded batch.

Softmax scores per proposal; background dropped; scores ``> score_thresh``; the surviving
(image, proposal, class) candidates decoded with the injected box coder from their
class-specific deltas, clipped to the image, boxes narrower or lower than ``min_size``
dropped; NMS per (image, class) group (``image * C + class``) in one ``grouped_nms`` call
(one NMS call on a GPU, ``batched_nms_on_device``; a loop over group segments on a CPU
above 1000 candidates, as torchvision switches too); the best ``detections_per_img`` per image.

Only the thresholded candidates are decoded (torchvision decodes every proposal for every
class; the numbers are the same, decoding is elementwise). Boxes below ``min_size`` go to a
group of their own instead of being removed before NMS (no second compaction), and are dropped
with the padding when the per-image lists are cut. NMS runs on float64 boxes: the group
offsets ``batched_nms`` adds grow with B·C, and in float32 they would round the coordinates
(0.06 px at 8 images × 90 classes × 800 px), which torchvision's per-image call does not.
"""

from __future__ import annotations

import attrs
import torch

from anchorage.core.interfaces import Anchors, DensePostprocessConfig, RCNNPostprocessor
from anchorage.core.registry import POSTPROCESSORS
from anchorage.plugins.postprocess import fields
from anchorage.plugins.postprocess.batching import (
    clip_boxes,
    grouped_nms,
    image_bounds,
    per_image_top_n,
)
from anchorage.plugins.postprocess.padded import clip_to, padded_nms


@POSTPROCESSORS.register(
    "rcnn_detections", examples=({}, {"score_thresh": 0.2, "detections_per_img": 10})
)
class RCNNDetections(RCNNPostprocessor):
    """Per-proposal class logits and class-specific deltas → per-image detections.

    ``__call__(predictions, anchors, image_sizes)``: ``predictions`` has ``cls_logits``
    ``[B,R,C+1]`` (column 0 = background), ``bbox_deltas`` ``[B,R,(C+1)*4]`` and ``valid`` bool
    ``[B,R]`` (False for padding rows); ``anchors`` the proposals (``Anchors``, boxes
    ``[B,R,4]`` xyxy batch pixels); ``image_sizes`` the ``(h, w)`` per image. Returns B dicts
    ``boxes [K,4]`` xyxy batch pixels, ``scores [K]``, ``labels [K]`` int64 in 1..C, best first,
    ``K <= detections_per_img``. Defaults are torchvision's (0.05, 0.5, 100, 1e-2).
    """

    @attrs.frozen(kw_only=True)
    class Config(DensePostprocessConfig):
        score_thresh: float = fields.score_thresh(0.05)
        nms_thresh: float = fields.nms_thresh(0.5)
        detections_per_img: int = fields.detections_per_img(100)
        min_size: float = attrs.field(default=1e-2, validator=attrs.validators.ge(0.0))

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.box_coder = cfg.box_coder

    def __call__(
        self,
        predictions: dict[str, torch.Tensor],
        anchors: Anchors,
        image_sizes: list[tuple[int, int]],
    ) -> list[dict[str, torch.Tensor]]:
        logits = predictions["cls_logits"].float()
        b, r, c1 = logits.shape
        if r == 0 or c1 == 1:  # no proposal in the whole batch, or no foreground class
            return [_empty(logits) for _ in range(b)]
        probs = torch.softmax(logits, -1)[..., 1:]  # [B,R,C]
        ok = (probs > self.cfg.score_thresh) & predictions["valid"][:, :, None]
        flat = ok.flatten().nonzero().squeeze(1)  # the one compaction before NMS
        img, rest = flat.div(r * (c1 - 1), rounding_mode="floor"), flat % (r * (c1 - 1))
        prop, cls = rest.div(c1 - 1, rounding_mode="floor"), rest % (c1 - 1)
        deltas = predictions["bbox_deltas"].float().reshape(b, r, c1, 4)[img, prop, cls + 1]
        boxes = self.box_coder.decode(deltas, anchors.boxes[img, prop])  # [N,4], no strides
        boxes = clip_boxes(boxes, image_bounds(image_sizes, boxes)[img])
        wh = boxes[:, 2:] - boxes[:, :2]
        small = (wh < self.cfg.min_size).any(1)
        group = torch.where(small, b * (c1 - 1), img * (c1 - 1) + cls)  # small: own group
        scores = probs.flatten()[flat]
        kept = grouped_nms(boxes, scores, group, self.cfg.nms_thresh)
        owner = torch.where(small[kept], b, img[kept])  # B = dropped
        return self._split(owner, kept, boxes, scores, cls + 1, b)

    def export_detections(
        self, predictions: dict[str, torch.Tensor], anchors: Anchors, image_size: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """The same detections in the fixed layout of an exported graph (``padded.padded_nms``;
        every image of the batch is ``image_size`` ``(h, w)``): inputs as ``__call__``'s.

        Every (proposal, class) pair is a candidate in ``[B,R·C]``, decoded and clipped as in
        ``__call__``; those below the score threshold, on padding rows or smaller than
        ``min_size`` get the score ``-inf`` (``__call__`` drops them before NMS, or NMS's them
        apart and drops them after: the same survivors)."""
        logits = predictions["cls_logits"].float()
        b, r, c1 = logits.shape
        c = c1 - 1
        probs = torch.softmax(logits, -1)[..., 1:]  # [B,R,C]
        deltas = predictions["bbox_deltas"].float().reshape(b, r, c1, 4)[:, :, 1:]
        refs = anchors.boxes[:, :, None, :]  # [B,R,1,4], broadcast over the classes
        boxes = clip_to(self.box_coder.decode(deltas, refs), image_size)  # [B,R,C,4]
        wh = boxes[..., 2:] - boxes[..., :2]
        ok = (probs > self.cfg.score_thresh) & predictions["valid"][:, :, None]
        ok = ok & (wh >= self.cfg.min_size).all(-1)
        scores = probs.masked_fill(~ok, float("-inf")).reshape(b, r * c)
        labels = torch.arange(1, c1, device=logits.device).repeat(b, r).reshape(b, r * c)
        return padded_nms(
            boxes.reshape(b, r * c, 4), scores, labels, c1, self.cfg.nms_thresh,
            self.cfg.detections_per_img,
        )  # fmt: skip

    def _split(
        self,
        owner: torch.Tensor,
        kept: torch.Tensor,
        boxes: torch.Tensor,
        scores: torch.Tensor,
        labels: torch.Tensor,
        b: int,
    ) -> list[dict[str, torch.Tensor]]:
        """NMS survivors (best first, ``owner`` = image, ``b`` = dropped) → B result dicts."""
        pos, sizes = per_image_top_n(owner, b, self.cfg.detections_per_img)
        mine = kept[pos]
        parts = (boxes[mine].split(sizes), scores[mine].split(sizes), labels[mine].split(sizes))
        return [{"boxes": x, "scores": s, "labels": lab} for x, s, lab in zip(*parts)]


def _empty(like: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        "boxes": like.new_zeros((0, 4)),
        "scores": like.new_zeros((0,)),
        "labels": torch.zeros(0, dtype=torch.int64, device=like.device),
    }
