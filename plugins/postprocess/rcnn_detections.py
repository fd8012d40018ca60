"""R-CNN detection postprocessing (``rcnn_detections``) on top of ``multiclass_nms``.

torchvision's ``RoIHeads.postprocess_detections``: class-specific boxes decoded from each
proposal, softmax scores, boxes clipped to the image, background dropped, scores
``> score_thresh``, boxes smaller than ``min_size`` dropped, NMS per class, the best
``detections_per_img``. Thresholding, NMS and the top-k are the ``multiclass_nms`` component's
(a spec component, ``nms``); what this adds is R-CNN's input form:

- boxes are class-specific: every (image, class) pair is handed to ``multiclass_nms`` as one
  single-class "image" of R proposals (its per-image, per-class NMS is then exactly
  torchvision's per-class NMS), and the survivors are merged back per image by score;
- ``min_size`` (torchvision: 1e-2) and padded proposal rows are applied as zero scores.

``multiclass_nms`` takes logits (``score: sigmoid``); the probabilities go in as
``torch.logit`` and come back through its sigmoid (float error ~1e-7; a ``score:
probabilities`` mode of ``multiclass_nms``, where it exists, is used as is), and the boxes go
in decoded (its injected coder is the identity). Its ``topk_candidates`` should be >= the
proposals per image (torchvision keeps all).
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from anchorage.core import component, injected
from anchorage.core.errors import SpecError
from anchorage.core.interfaces import RCNNPostprocessor
from anchorage.core.registry import POSTPROCESSORS
from anchorage.plugins.models.segmentation import build_child

_NMS = {"type": "multiclass_nms", "score": "sigmoid", "topk_candidates": 1000}


@POSTPROCESSORS.register("rcnn_detections", examples=({"nms": _NMS},))
class RCNNDetections(RCNNPostprocessor):
    """Per-proposal class logits and class-specific deltas → per-image detections.

    ``__call__(predictions, references, image_sizes)``: ``predictions`` has ``cls_logits``
    ``[B,R,C+1]``, ``bbox_deltas`` ``[B,R,(C+1)*4]`` and ``valid`` bool ``[B,R]`` (False for
    padding); ``references`` the proposals ``[B,R,4]`` xyxy batch pixels; ``image_sizes`` the
    ``(h, w)`` per image. Returns B dicts ``boxes [K,4]``, ``scores [K]``, ``labels [K]`` (1..C),
    best first, ``K <= nms.detections_per_img``.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        nms: Any = component("postprocessor")
        min_size: float = attrs.field(default=1e-2, validator=attrs.validators.ge(0.0))
        box_coder: Any = injected(default=None)

    def __init__(self, cfg: Config) -> None:
        self.nms = build_child("postprocessor", cfg.nms, box_coder=_AlreadyDecoded())
        self.score_mode = getattr(self.nms.cfg, "score", "sigmoid")
        if self.score_mode not in ("sigmoid", "probabilities"):
            raise SpecError(
                "rcnn_detections: nms.score must be 'sigmoid' (it is handed logits of the "
                f"softmax probabilities) or 'probabilities', got {self.score_mode!r}"
            )
        self.box_coder = cfg.box_coder or build_child("box_coder", {"type": "delta_xywh"})
        self.min_size = cfg.min_size
        self.max_det = int(self.nms.cfg.detections_per_img)

    def __call__(
        self,
        predictions: dict[str, torch.Tensor],
        references: torch.Tensor,
        image_sizes: list[tuple[int, int]],
    ) -> list[dict[str, torch.Tensor]]:
        logits, valid = predictions["cls_logits"], predictions["valid"]
        b, r, c1 = logits.shape
        if r == 0 or c1 == 1:  # no proposal in the whole batch, or no foreground class
            return [_empty(logits) for _ in range(b)]
        deltas = predictions["bbox_deltas"].reshape(b, r, c1, 4)[:, :, 1:]
        boxes = _clip(self.box_coder.decode(deltas, references[:, :, None, :]), image_sizes)
        probs = torch.softmax(logits, -1)[..., 1:]  # [B,R,C]
        wh = boxes[..., 2:] - boxes[..., :2]
        ok = (wh >= self.min_size).all(-1) & valid[:, :, None]
        probs = torch.where(ok, probs, torch.zeros_like(probs))
        # (image, class) pairs become single-class "images" for multiclass_nms.
        per_pair = {
            "cls_logits": self._as_scores(probs).permute(0, 2, 1).reshape(-1, r, 1),
            "bbox_deltas": boxes.permute(0, 2, 1, 3).reshape(-1, r, 4),  # already decoded
        }
        sizes = [s for s in image_sizes for _ in range(c1 - 1)]
        found = self.nms(per_pair, None, sizes)
        return [self._merge(found[i * (c1 - 1) : (i + 1) * (c1 - 1)]) for i in range(b)]

    def _as_scores(self, probs: torch.Tensor) -> torch.Tensor:
        """What ``multiclass_nms`` turns back into ``probs`` with its ``score`` mode."""
        return torch.logit(probs) if self.score_mode == "sigmoid" else probs

    def _merge(self, per_class: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        boxes = torch.cat([d["boxes"] for d in per_class])
        scores = torch.cat([d["scores"] for d in per_class])
        labels = torch.cat([torch.full_like(d["labels"], k + 1) for k, d in enumerate(per_class)])
        order = scores.argsort(descending=True, stable=True)[: self.max_det]
        return {"boxes": boxes[order], "scores": scores[order], "labels": labels[order]}


def _empty(like: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        "boxes": like.new_zeros((0, 4)),
        "scores": like.new_zeros((0,)),
        "labels": torch.zeros(0, dtype=torch.int64, device=like.device),
    }


class _AlreadyDecoded:
    """The box coder handed to ``multiclass_nms``: boxes arrive decoded (class-specific)."""

    def decode(self, deltas: torch.Tensor, reference: Any) -> torch.Tensor:
        return deltas


def _clip(boxes: torch.Tensor, image_sizes: list[tuple[int, int]]) -> torch.Tensor:
    """Clamp ``[B,R,C,4]`` boxes to each image's ``(h, w)``."""
    hw = torch.as_tensor(image_sizes, dtype=boxes.dtype, device=boxes.device)
    upper = hw.flip(-1).repeat(1, 2)[:, None, None, :]
    return torch.minimum(boxes.clamp(min=0), upper)
