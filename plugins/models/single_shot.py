"""``single_shot``: the dense-detector skeleton (SSD, TinySSD; RetinaNet, FCOS, YOLO by spec).

Named stages, every collaborator a spec component:
``prepare_batch`` (checks, preprocess, padded ``GroundTruth``) → ``features`` (backbone, then
the optional ``neck``, e.g. FPN with P6/P7) → ``head`` (a ``dense_head``) → ``anchors``
(``Anchors`` with per-level counts and strides), then in train mode ``targets`` (``matcher`` →
``DenseTargets`` encoded by ``box_coder``) → ``loss`` (a ``dense_loss``), in eval mode
``postprocessor`` (a ``dense_postprocessor``: decode, select, NMS) → rescale to the original
image sizes. With SSD's components the numbers are torchvision ``SSD``'s.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn

from anchorage.core import component
from anchorage.core.build import build_child
from anchorage.core.composition import check_background_column, check_levels, node_path
from anchorage.core.config import as_section
from anchorage.core.interfaces import Anchors, DenseTargets, GroundTruth
from anchorage.core.registry import MODELS
from anchorage.core.slots import (
    Slot,
    check_assignment,
    check_dense_predictions,
    check_detections,
    check_loss_terms,
)
from anchorage.plugins.models.detection_batch import batch_anchors, prepare_batch
from anchorage.plugins.models.preprocess import ImagePreprocessor, PreprocessConfig

SSD_PREPROCESS = PreprocessConfig(fixed_size=(300, 300), size_divisible=1)

_TINY = {
    "num_classes": 2,
    "preprocess": {"fixed_size": (64, 64)},
    "backbone": {"type": "tiny_ssd_base", "base_channels": (4, 8), "extra_channels": (8,)},
    "anchor_generator": {"type": "multibox_prior", "sizes": ((0.2,), (0.4,), (0.8,))},
    "loss": {"type": "masked_l1"},
}


def _default(kind: str, data: dict, role: str | None = None) -> Any:
    return component(kind, role=role, factory=lambda: dict(data))


@MODELS.register("single_shot", examples=(_TINY,))
class SingleShotDetector(nn.Module):
    """Dense (single-shot) detector with torchvision detection I/O.

    ``forward(images, targets=None)``: ``images`` list of float ``[3,H_i,W_i]`` in 0..1.
    Train mode: ``targets[i]`` has ``boxes [N,4]`` xyxy pixels, ``labels [N]`` int64 in 1..C,
    optional ``iscrowd [N]`` (never matched); returns the loss's ``loss_*`` terms
    (``loss_classification``, ``loss_bbox_regression`` for the built-in losses). Eval mode: one
    dict per image with ``boxes [K,4]`` (original pixels), ``scores [K]``, ``labels [K]``.
    ``num_classes`` = C (background not counted). The head is built with ``in_channels`` (one
    per feature level), ``num_anchors`` (per location, per level) and ``num_classes``.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        num_classes: int = attrs.field(validator=attrs.validators.ge(1))
        backbone: Any = component("backbone")
        neck: Any = component("neck", optional=True)
        anchor_generator: Any = component("anchor_generator")
        head: Any = _default("head", {"type": "ssd_head"}, "dense_head")
        matcher: Any = _default("matcher", {"type": "max_iou", "keep_best_anchor": True})
        box_coder: Any = _default("box_coder", {"type": "delta_xywh"})
        loss: Any = _default("loss", {"type": "multibox"}, "dense_loss")
        postprocessor: Any = _default(
            "postprocessor", {"type": "multiclass_nms"}, "dense_postprocessor"
        )
        preprocess: PreprocessConfig = SSD_PREPROCESS

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.num_classes = cfg.num_classes
        self.preprocess = ImagePreprocessor(
            as_section(PreprocessConfig, cfg.preprocess, "model.preprocess")
        )
        self.backbone = build_child("backbone", cfg.backbone)
        info = tuple(self.backbone.feature_info)
        self.neck = None
        if cfg.neck is not None:
            self.neck = build_child("neck", cfg.neck, in_feature_info=info)
            info = tuple(self.neck.feature_info)
        self.strides = tuple(f.stride for f in info)
        self.anchor_generator = build_child("anchor_generator", cfg.anchor_generator)
        check_levels(
            len(self.anchor_generator.num_anchors_per_location()),
            node_path(cfg.anchor_generator, "model.anchor_generator"),
            "anchor levels (the head predicts one level per feature)",
            info,
            node_path(cfg.neck, "model.neck")
            if cfg.neck is not None
            else node_path(cfg.backbone, "model.backbone"),
        )
        self.head = build_child(
            "head",
            cfg.head,
            in_channels=tuple(f.channels for f in info),
            num_anchors=tuple(self.anchor_generator.num_anchors_per_location()),
            num_classes=cfg.num_classes,
        )
        self.matcher = build_child("matcher", cfg.matcher)
        self.box_coder = build_child("box_coder", cfg.box_coder)
        self.loss = build_child("loss", cfg.loss)
        self.postprocessor = build_child(
            "postprocessor", cfg.postprocessor, box_coder=self.box_coder
        )
        self.slots = {
            name: Slot.of(kind, getattr(cfg, name), f"model.{name}")
            for name, kind in (
                ("head", "head"), ("matcher", "matcher"), ("loss", "loss"),
                ("postprocessor", "postprocessor"),
            )
        }  # fmt: skip
        check_background_column(
            ("head", cfg.head, self.head),
            ("loss", cfg.loss, self.loss),
            ("postprocessor", cfg.postprocessor, self.postprocessor),
        )

    def forward(
        self, images: list[torch.Tensor], targets: list[dict[str, Any]] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        batch = prepare_batch(
            self.preprocess,
            images,
            targets,
            model="single_shot",
            num_classes=self.num_classes,
            training=self.training,
        )
        features = self.features(batch.images)
        predictions = check_dense_predictions(
            self.slots["head"], self.head(features), len(batch.image_sizes), {}
        )
        anchors = batch_anchors(
            self.anchor_generator,
            tuple(batch.images.shape[-2:]),
            features,
            self.strides,
            predictions["cls_logits"].shape[1],
            "model.anchor_generator",
        )
        if self.training:
            terms = self.loss(predictions, self.targets(anchors, batch.gt, predictions))
            return check_loss_terms(self.slots["loss"], terms)
        detections = check_detections(
            self.slots["postprocessor"],
            self.postprocessor(predictions, anchors, batch.image_sizes),
            len(batch.image_sizes),
        )
        return self.preprocess.postprocess(detections, batch.image_sizes, batch.original_sizes)

    def export_forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eval mode for an exported graph (``anchorage.core.deploy``): ``images`` float
        ``[B,3,H,W]`` in 0..1 → the fixed detection layout of ``postprocess.padded`` (boxes in
        input pixels): ``boxes [B,D,4]``, ``scores [B,D]``, ``labels [B,D]``,
        ``num_detections [B]``."""
        x, size = self.preprocess.export_batch(images)
        features = self.features(x)
        predictions = self.head(features)
        anchors = batch_anchors(
            self.anchor_generator, tuple(x.shape[-2:]), features, self.strides,
            predictions["cls_logits"].shape[1], "model.anchor_generator",
        )  # fmt: skip
        found = self.postprocessor.export_detections(predictions, anchors, size)
        found["boxes"] = self.preprocess.export_rescale(found["boxes"], size, images.shape[-2:])
        return found

    def export_info(self) -> dict[str, Any]:
        """The exported graph's input pipeline and output kind (``anchorage.core.deploy``)."""
        return self.preprocess.detection_export_info(self.num_classes)

    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Backbone (+ neck) features, fine → coarse."""
        features = self.backbone(images)
        return features if self.neck is None else self.neck(features)

    def targets(
        self, anchors: Anchors, gt: GroundTruth, predictions: dict[str, torch.Tensor]
    ) -> DenseTargets:
        """Match anchors to the padded gt and encode the per-anchor targets."""
        slot = self.slots["matcher"]
        assignment = check_assignment(
            slot,
            self.matcher(anchors, gt, predictions=predictions),
            gt.boxes.shape[0],
            anchors.boxes.shape[-2],
        )
        with slot.blames(f"Assignment.matched indexes past the {gt.boxes.shape[1]} gt boxes"):
            return DenseTargets.from_assignment(
                anchors, gt, assignment, self.box_coder, self.num_classes
            )
