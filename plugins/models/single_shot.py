"""``single_shot``: SSD-style detectors assembled from registered parts.

Named stages (torchvision ``SSD`` semantics, every collaborator a spec component):
``preprocess`` → ``features`` (backbone) → ``head`` → ``anchors``, then in train mode
``assign`` (IoU → ``matcher`` → ``box_coder.encode``) → ``loss``, in eval mode
``postprocessor`` (decode, per-class top-k, NMS) → ``rescale`` to the original image sizes.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn

from anchorage.core import component
from anchorage.core.composition import check_levels, node_path
from anchorage.core.config import validate_section
from anchorage.core.data.batching import pad_targets
from anchorage.core.errors import DataError
from anchorage.core.interfaces import Matcher
from anchorage.core.registry import MODELS
from anchorage.plugins.matchers.iou import batched_box_iou
from anchorage.plugins.models.preprocess import ImagePreprocessor, PreprocessConfig
from anchorage.plugins.models.segmentation import build_child

SSD_PREPROCESS = PreprocessConfig(fixed_size=(300, 300), size_divisible=1)

_TINY = {
    "num_classes": 2,
    "preprocess": {"fixed_size": (64, 64)},
    "backbone": {"type": "tiny_ssd_base", "base_channels": (4, 8), "extra_channels": (8,)},
    "anchor_generator": {"type": "multibox_prior", "sizes": ((0.2,), (0.4,), (0.8,))},
    "loss": {"type": "masked_l1"},
}


def _default(kind: str, data: dict) -> Any:
    return component(kind, factory=lambda: dict(data))


@MODELS.register("single_shot", examples=(_TINY,))
class SingleShotDetector(nn.Module):
    """One-stage detector (SSD, TinySSD) with torchvision detection I/O.

    ``forward(images, targets=None)``: ``images`` list of float ``[3,H_i,W_i]`` in 0..1.
    Train mode: ``targets[i]`` has ``boxes [N,4]`` xyxy pixels, ``labels [N]`` int64 in 1..C,
    optional ``iscrowd [N]`` (never matched); returns ``loss_classification`` and
    ``loss_bbox_regression``. Eval mode: one dict per image with ``boxes [K,4]`` (original
    pixels), ``scores [K]``, ``labels [K]``. ``num_classes`` = C (background not counted).
    """

    @attrs.frozen(kw_only=True)
    class Config:
        num_classes: int = attrs.field(validator=attrs.validators.ge(1))
        backbone: Any = component("backbone")
        anchor_generator: Any = component("anchor_generator")
        head: Any = _default("head", {"type": "ssd_head"})
        matcher: Any = _default("matcher", {"type": "max_iou", "keep_best_anchor": True})
        box_coder: Any = _default("box_coder", {"type": "delta_xywh"})
        loss: Any = _default("loss", {"type": "multibox"})
        postprocessor: Any = _default("postprocessor", {"type": "multiclass_nms"})
        preprocess: PreprocessConfig = SSD_PREPROCESS

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.num_classes = cfg.num_classes
        pre = cfg.preprocess
        if not isinstance(pre, PreprocessConfig):
            pre = validate_section(PreprocessConfig, pre, "model.preprocess", lambda _p: "<python>")
        self.preprocess = ImagePreprocessor(pre)
        self.backbone = build_child("backbone", cfg.backbone)
        self.anchor_generator = build_child("anchor_generator", cfg.anchor_generator)
        check_levels(
            len(self.anchor_generator.num_anchors_per_location()),
            node_path(cfg.anchor_generator, "model.anchor_generator"),
            "anchor levels (the head predicts one level per feature)",
            self.backbone.feature_info,
            node_path(cfg.backbone, "model.backbone"),
        )
        self.head = build_child(
            "head",
            cfg.head,
            in_channels=tuple(f.channels for f in self.backbone.feature_info),
            num_anchors=tuple(self.anchor_generator.num_anchors_per_location()),
            num_classes=cfg.num_classes,
        )
        self.matcher = build_child("matcher", cfg.matcher)
        self.box_coder = build_child("box_coder", cfg.box_coder)
        self.loss = build_child("loss", cfg.loss)
        self.postprocessor = build_child(
            "postprocessor", cfg.postprocessor, box_coder=self.box_coder
        )

    def forward(
        self, images: list[torch.Tensor], targets: list[dict[str, Any]] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        if self.training and targets is None:
            raise DataError("single_shot: train mode needs targets (one dict per image)")
        batch = self.preprocess(images, targets if self.training else None)
        features = self.backbone(batch.images)
        predictions = self.head(features)
        anchors = self.anchors(batch.images, features, predictions)
        if self.training:
            cls_targets, box_targets = self.assign(batch.targets, anchors)
            return self.loss(predictions, cls_targets, box_targets)
        detections = self.postprocessor(predictions, anchors, batch.image_sizes)
        return self.preprocess.postprocess(detections, batch.image_sizes, batch.original_sizes)

    def anchors(
        self, images: torch.Tensor, features: dict[str, torch.Tensor], predictions: dict
    ) -> torch.Tensor:
        """Anchors ``[A,4]`` for the batch tensor; checks A against the head's outputs."""
        sizes = [tuple(f.shape[-2:]) for f in features.values()]
        anchors = self.anchor_generator(tuple(images.shape[-2:]), sizes, device=images.device)
        if anchors.shape[0] != predictions["cls_logits"].shape[1]:
            raise ValueError(
                f"single_shot: the anchor generator gives {anchors.shape[0]} anchors but the head "
                f"predicts {predictions['cls_logits'].shape[1]}"
            )
        return anchors

    def assign(
        self, targets: list[dict[str, Any]], anchors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Match anchors to gt → ``cls_targets [B,A]`` (class, 0 bg, -1 ignore), ``box_targets``.

        ``box_targets [B,A,4]`` are the coder's deltas of the matched gt (zeros elsewhere).
        """
        _check_targets(targets, self.num_classes)
        gt, labels, valid = (t.to(anchors.device) for t in pad_targets(targets))
        matched = self.matcher(batched_box_iou(gt, valid, anchors))
        positive = matched >= 0
        ignore = torch.where(matched == Matcher.IGNORE, -1, 0)
        reference = anchors.expand(matched.shape[0], -1, -1)
        if gt.shape[1] == 0:
            return ignore, torch.zeros_like(reference)
        index = matched.clamp(min=0)
        matched_boxes = gt.gather(1, index[..., None].expand(-1, -1, 4))
        cls_targets = torch.where(positive, labels.gather(1, index), ignore)
        boxes = torch.where(positive[..., None], matched_boxes, reference)
        return cls_targets, self.box_coder.encode(boxes, reference)


def _check_targets(targets: list[dict[str, Any]], num_classes: int) -> None:
    """Degenerate boxes and out-of-range labels are data errors (after resizing)."""
    for i, t in enumerate(targets):
        boxes, labels = t["boxes"], t.get("labels")
        if labels is None or len(labels) != len(boxes):
            raise DataError(f"targets[{i}]: needs 'labels' with one label per box")
        bad = (boxes[:, 2:] <= boxes[:, :2]).any(dim=1)
        if bad.any():
            k = int(bad.nonzero()[0, 0])
            raise DataError(
                f"targets[{i}]: box {k} {boxes[k].tolist()} has non-positive width or height "
                "(expected xyxy with x2 > x1, y2 > y1)"
            )
        if len(labels) and (labels.min() < 1 or labels.max() > num_classes):
            raise DataError(
                f"targets[{i}]: labels must be in 1..{num_classes}, got {labels.tolist()[:10]}"
            )
