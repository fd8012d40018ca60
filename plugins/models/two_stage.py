"""Two-stage detectors (``two_stage``): Fast / Faster / Mask R-CNN from registered parts.

Pipeline (torchvision ``GeneralizedRCNN`` semantics, every piece a spec component):

1. ``preprocess`` (``ImagePreprocessor``): normalize, resize (min/max size), pad the batch.
2. ``backbone`` (+ optional ``neck``, e.g. FPN) → features.
3. ``rpn`` → per-image proposals (train: + ``loss_objectness``, ``loss_rpn_box_reg``). Without
   an ``rpn`` (classic Fast R-CNN) proposals come from ``targets[i]["proposals"]`` (``[R,4]``
   xyxy in original image pixels; the data pipeline or ``proposals_file`` supplies them).
4. ``roi_box`` → detections (train: ``loss_classifier``, ``loss_box_reg``), optional
   ``roi_mask`` → masks (train: ``loss_mask``).
5. boxes mapped back to the original image sizes; masks pasted into the image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from anchorage.core import component
from anchorage.core.build import build_child
from anchorage.core.composition import CompositionError, check_levels, node_path
from anchorage.core.config import as_section
from anchorage.core.errors import AnchorageError, CheckpointError, DataError
from anchorage.core.registry import MODELS
from anchorage.plugins.models.detection_batch import DetectionBatch, prepare_batch
from anchorage.plugins.models.preprocess import ImagePreprocessor, PreprocessConfig
from anchorage.plugins.models.rcnn_stages import (
    BoxStage,
    BoxStageConfig,
    MaskStage,
    MaskStageConfig,
    RPNConfig,
    RPNStage,
)
from anchorage.plugins.postprocess.padded import found_rows

_TINY = {
    "num_classes": 2,
    "preprocess": {"min_size": (64,), "max_size": 96},
    "backbone": {"type": "resnet18", "return_layers": ("layer3", "layer4")},
    "neck": {"type": "fpn", "out_channels": 16},
    "rpn": {
        "anchor_generator": {"type": "grid_anchors", "sizes": ((16,), (32,), (64,))},
        "head": {"type": "rpn_head"},
        "matcher": {
            "type": "max_iou",
            "high_threshold": 0.7,
            "low_threshold": 0.3,
            "allow_low_quality_matches": True,
        },
        "box_coder": {"type": "delta_xywh", "weights": (1.0, 1.0, 1.0, 1.0)},
        "sampler": {"type": "balanced_sampler", "batch_size_per_image": 32},
        "proposals": {"type": "rpn_proposals", "post_nms_top_n_test": 20},
        "loss": {"type": "rpn_loss"},
    },
    "roi_box": {
        "roi_extractor": {"type": "multiscale_roi_align", "output_size": 3},
        "head": {"type": "two_mlp_box_head", "representation_size": 16},
        "matcher": {"type": "max_iou", "high_threshold": 0.5},
        "box_coder": {"type": "delta_xywh"},
        "sampler": {
            "type": "balanced_sampler",
            "batch_size_per_image": 16,
            "positive_fraction": 0.25,
        },
        "loss": {"type": "fast_rcnn_loss"},
        "postprocessor": {"type": "rcnn_detections"},
    },
}


@MODELS.register("two_stage", examples=(_TINY,))
class TwoStageDetector(nn.Module):
    """Fast / Faster / Mask R-CNN with torchvision detection I/O.

    ``forward(images, targets=None)``: ``images`` list of float ``[3,H_i,W_i]`` in 0..1.
    Train mode: ``targets[i]`` has ``boxes [N,4]`` xyxy pixels, ``labels [N]`` int64 1..C,
    optional ``iscrowd [N]`` (crowd boxes are never matched), ``masks [N,H_i,W_i]`` uint8 with a
    mask stage, ``proposals [R,4]`` without an RPN; returns scalar ``loss_*`` terms. Eval mode:
    one dict per image with ``boxes [K,4]`` (original pixels), ``scores [K]``, ``labels [K]``
    (+ ``masks [K,1,H_i,W_i]`` float 0..1).
    """

    @attrs.frozen(kw_only=True)
    class Config:
        num_classes: int = attrs.field(validator=attrs.validators.gt(0))
        preprocess: PreprocessConfig = attrs.field(factory=PreprocessConfig)
        backbone: Any = component("backbone")
        neck: Any = component("neck", optional=True)
        rpn: RPNConfig | None = None
        roi_box: BoxStageConfig
        roi_mask: MaskStageConfig | None = None
        proposals_file: str | None = None

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        self.preprocess = ImagePreprocessor(
            as_section(PreprocessConfig, cfg.preprocess, "model.preprocess")
        )
        self.backbone = build_child("backbone", cfg.backbone)
        info = list(self.backbone.feature_info)
        features = node_path(cfg.backbone, "model.backbone")
        self.neck = None
        if cfg.neck is not None:
            self.neck = build_child("neck", cfg.neck, in_feature_info=tuple(info))
            info = list(self.neck.feature_info)
            features = node_path(cfg.neck, "model.neck")
        self.rpn = self._build_rpn(as_section(RPNConfig, cfg.rpn, "model.rpn"), info, features)
        box = as_section(BoxStageConfig, cfg.roi_box, "model.roi_box")
        self.roi_box = BoxStage(box, info, cfg.num_classes, features)
        mask = as_section(MaskStageConfig, cfg.roi_mask, "model.roi_mask")
        self.roi_mask = None if mask is None else MaskStage(mask, info, cfg.num_classes, features)
        self._file_proposals = _load_proposals(cfg.proposals_file)

    @staticmethod
    def _build_rpn(cfg: RPNConfig | None, info: list, features: str) -> RPNStage | None:
        """The RPN stage; its head's width and its anchor levels must fit the features."""
        if cfg is None:
            return None
        head = node_path(cfg.head, "model.rpn.head")
        widths = {f.channels for f in info}
        if len(widths) != 1:
            raise CompositionError(
                f"{head}: the rpn head is shared by every level, but {features} gives levels of "
                f"different widths ({', '.join(f'{f.name}: {f.channels}' for f in info)}); add "
                "a neck such as fpn",
                head,
                features,
            )
        stage = RPNStage(cfg, info)
        levels = len(stage.anchor_generator.num_anchors_per_location())
        anchors = node_path(cfg.anchor_generator, "model.rpn.anchor_generator")
        check_levels(levels, anchors, "anchor levels", info, features)
        return stage

    def forward(
        self, images: list[torch.Tensor], targets: list[dict[str, Any]] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        batch = prepare_batch(
            self.preprocess,
            images,
            self._with_file_proposals(targets),
            model="two_stage",
            num_classes=self.num_classes,
            training=self.training,
            masks=self.roi_mask is not None,
            proposals=self.rpn is None,
        )
        features = self.backbone(batch.images)
        if self.neck is not None:
            features = self.neck(features)
        proposals, losses = self._proposals(features, batch)
        if self.training:
            sampled = self.roi_box.sample(proposals, batch.gt)
            losses.update(self.roi_box.losses(features, sampled, batch.image_sizes))
            if self.roi_mask is not None:
                losses.update(
                    self.roi_mask.losses(features, sampled, batch.image_sizes, batch.masks)
                )
            return losses
        results = self.roi_box.detect(features, proposals, batch.image_sizes)
        if self.roi_mask is not None:
            results = self.roi_mask.detect(features, results, batch.image_sizes)
        return self._to_original(results, batch)

    def export_forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eval mode for an exported graph (``anchorage.core.deploy``): ``images`` float
        ``[B,3,H,W]`` in 0..1 → ``boxes [B,D,4]`` (input pixels), ``scores [B,D]``, ``labels
        [B,D]``, ``num_detections [B]`` (``postprocess.padded``'s layout) and, with a mask
        stage, ``masks [B,D,1,H,W]`` probabilities (zero past ``num_detections``)."""
        if self.rpn is None:
            raise AnchorageError(
                "a two-stage model without an rpn (Fast R-CNN) reads its proposals from the "
                "data, which an exported graph has no input for; export a model with model.rpn"
            )
        x, size = self.preprocess.export_batch(images)
        features = self.backbone(x)
        if self.neck is not None:
            features = self.neck(features)
        hw = (int(x.shape[-2]), int(x.shape[-1]))
        proposals, valid = self.rpn.export_proposals(features, hw, size)
        found = self.roi_box.export_detect(features, proposals, valid, size)
        if self.roi_mask is not None:
            masks = self.roi_mask.export_masks(features, found, size)
        found["boxes"] = self.preprocess.export_rescale(found["boxes"], size, images.shape[-2:])
        if self.roi_mask is not None:
            original = (images.shape[-2], images.shape[-1])
            pasted = self.roi_mask.paste.export_paste(masks, found["boxes"], original)
            found["masks"] = torch.where(found_rows(found)[..., None, None, None], pasted, 0.0)
        return found

    def export_info(self) -> dict[str, Any]:
        """The exported graph's input pipeline and output kind (``anchorage.core.deploy``)."""
        return self.preprocess.detection_export_info(self.num_classes)

    def _proposals(self, features: dict, batch: DetectionBatch) -> tuple[list, dict]:
        if self.rpn is None:
            return batch.proposals, {}
        hw = (int(batch.images.shape[-2]), int(batch.images.shape[-1]))
        return self.rpn(features, hw, batch.image_sizes, batch.gt)

    def _to_original(self, results: list[dict], batch: DetectionBatch) -> list[dict]:
        masks = [r.pop("masks", None) for r in results]
        results = self.preprocess.postprocess(results, batch.image_sizes, batch.original_sizes)
        if self.roi_mask is None:
            return results
        for r, m in zip(results, masks):
            r["masks"] = m
        return self.roi_mask.paste(results, batch.original_sizes)

    def _with_file_proposals(self, targets: list[dict] | None) -> list[dict] | None:
        if self._file_proposals is None or targets is None:
            return targets
        out = []
        for t in targets:
            key = int(t["image_id"])
            if key not in self._file_proposals:
                raise DataError(f"proposals_file has no proposals for image_id {key}")
            out.append({**t, "proposals": self._file_proposals[key]})
        return out


def _load_proposals(path: str | None) -> dict[int, torch.Tensor] | None:
    """``{image_id: float [R,4] xyxy original pixels}`` saved with ``torch.save``."""
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"proposals_file: no such file {path!r}")
    data = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or not all(
        isinstance(v, torch.Tensor) and v.dim() == 2 and v.shape[-1] == 4 for v in data.values()
    ):
        raise CheckpointError(f"proposals_file {path!r}: expected {{image_id: Tensor[R,4]}}")
    return {int(k): v.float() for k, v in data.items()}
