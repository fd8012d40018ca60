"""The stages of a two-stage detector: region proposals (RPN) and RoI heads (box, mask).

Each stage is an ``nn.Module`` assembled from registered collaborators (anchor generator,
head, matcher, box coder, sampler, loss, postprocessor) and runs on the whole padded batch:
matching on ``[B,G,N]`` IoU, sampling on ``[B,N]`` masks, encoding and losses on batched
tensors. Only RoI pooling sees per-image box lists (torchvision.ops' format), and mask
targets are cropped image by image (gt masks differ in size; see ``_mask_targets``).
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torchvision.ops import roi_align

from anchorage.core import component
from anchorage.core.build import build_child
from anchorage.core.composition import CompositionError, check_feature_names, node_path
from anchorage.core.interfaces import Anchors, DenseTargets, FeatureSpec, GroundTruth
from anchorage.core.interfaces.matching import gather_rows
from anchorage.core.slots import Slot, check_assignment, check_loss_terms
from anchorage.plugins.models.detection_batch import batch_anchors


@attrs.frozen(kw_only=True)
class RPNConfig:
    """Region proposal network: anchors, head, assignment, proposal selection, loss."""

    anchor_generator: Any = component("anchor_generator")
    head: Any = component("head", role="rpn_head")
    matcher: Any = component("matcher")
    box_coder: Any = component("box_coder")
    sampler: Any = component("sampler")
    proposals: Any = component("postprocessor", role="rpn_proposals")
    loss: Any = component("loss", role="rpn_loss")


@attrs.frozen(kw_only=True)
class BoxStageConfig:
    """RoI box head: pooling, head, assignment, loss, detection postprocessing."""

    roi_extractor: Any = component("roi_extractor")
    head: Any = component("head", role="roi_box_head")
    matcher: Any = component("matcher")
    box_coder: Any = component("box_coder")
    sampler: Any = component("sampler")
    loss: Any = component("loss", role="roi_box_loss")
    postprocessor: Any = component("postprocessor", role="rcnn_postprocessor")
    add_gt_as_proposals: bool = True


@attrs.frozen(kw_only=True)
class MaskStageConfig:
    """RoI mask head: pooling, head, loss, paste-back into the image."""

    roi_extractor: Any = component("roi_extractor")
    head: Any = component("head", role="roi_mask_head")
    loss: Any = component("loss", role="mask_loss")
    paste: Any = component("postprocessor", role="mask_postprocessor")


class RPNStage(nn.Module):
    """Features → proposals (+ RPN losses in train mode): a class-agnostic dense detector.

    ``forward(features, batch_size_hw, image_sizes, gt)``: ``features`` dict fine → coarse,
    ``batch_size_hw`` the padded batch ``(H, W)``, ``image_sizes`` per image, ``gt`` the
    padded ``GroundTruth`` (train mode) or None. The stages are the dense skeleton's: head →
    ``Anchors`` (with the levels' strides) → proposals (the ``rpn_proposals`` postprocessor
    decodes with the injected coder); in train mode matcher → sampler → ``DenseTargets`` (one
    foreground class) → loss. Returns per-image proposal boxes ``[R_i,4]`` (batch pixels, best
    first) and a dict of losses (empty in eval mode).
    """

    def __init__(self, cfg: RPNConfig, in_feature_info: list[FeatureSpec]) -> None:
        super().__init__()
        in_channels = in_feature_info[0].channels
        self.strides = tuple(f.stride for f in in_feature_info)
        self.anchor_generator = build_child("anchor_generator", cfg.anchor_generator)
        num_anchors = self.anchor_generator.num_anchors_per_location()
        if len(set(num_anchors)) != 1:
            anchors = node_path(cfg.anchor_generator, "model.rpn.anchor_generator")
            head = node_path(cfg.head, "model.rpn.head")
            raise CompositionError(
                f"{anchors}: {num_anchors} anchors per location on the levels, but {head} is "
                "shared by every level and needs the same number on each",
                anchors,
                head,
            )
        self.head = build_child(
            "head", cfg.head, in_channels=in_channels, num_anchors=num_anchors[0]
        )
        self.matcher = build_child("matcher", cfg.matcher)
        self.matcher_slot = Slot.of("matcher", cfg.matcher, "model.rpn.matcher")
        self.box_coder = build_child("box_coder", cfg.box_coder)
        self.sampler = build_child("sampler", cfg.sampler)
        self.proposals = build_child("postprocessor", cfg.proposals, box_coder=self.box_coder)
        self.loss = build_child("loss", cfg.loss)
        self.loss_slot = Slot.of("loss", cfg.loss, "model.rpn.loss")

    def forward(
        self,
        features: dict[str, torch.Tensor],
        batch_size_hw: tuple[int, int],
        image_sizes: list[tuple[int, int]],
        gt: GroundTruth | None,
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        out = self.head(features)
        anchors = batch_anchors(
            self.anchor_generator,
            batch_size_hw,
            features,
            self.strides,
            out["objectness"].shape[1],
            "model.rpn.anchor_generator",
        )
        found = self.proposals(out, anchors, image_sizes, training=self.training)
        proposals = [p["boxes"] for p in found]
        if gt is None:
            return proposals, {}
        gt = gt.class_agnostic()
        assignment = check_assignment(
            self.matcher_slot,
            self.matcher(anchors, gt, predictions=out),
            gt.boxes.shape[0],
            anchors.boxes.shape[-2],
        )
        positive, negative = self.sampler(assignment.matched)
        with self.matcher_slot.blames(
            f"Assignment.matched indexes past the {gt.boxes.shape[1]} gt boxes"
        ):
            targets = DenseTargets.from_assignment(anchors, gt, assignment, self.box_coder, 1)
        losses = self.loss(
            out["objectness"], out["bbox_deltas"], positive, negative, targets.box_targets
        )
        return proposals, check_loss_terms(self.loss_slot, losses)

    def export_proposals(
        self,
        features: dict[str, torch.Tensor],
        batch_size_hw: tuple[int, int],
        image_size: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode proposals for an exported graph (every image ``image_size``): boxes
        ``[B,P,4]`` xyxy batch pixels, best first, and ``valid [B,P]`` (the ``rpn_proposals``
        postprocessor's ``export_proposals``)."""
        out = self.head(features)
        anchors = batch_anchors(
            self.anchor_generator, batch_size_hw, features, self.strides,
            out["objectness"].shape[1], "model.rpn.anchor_generator",
        )  # fmt: skip
        return self.proposals.export_proposals(out, anchors, image_size)


@attrs.frozen
class Sampled:
    """Proposals chosen for training the RoI heads, concatenated image by image.

    ``boxes [R,4]``, ``labels [R]`` (0 background), ``matched [R]`` (gt index in its image's
    target, clamped to 0 for background), ``counts`` per image, ``targets [R,4]`` encoded,
    ``positive_counts`` per image (the RoIs with ``labels > 0``).
    """

    boxes: torch.Tensor
    labels: torch.Tensor
    matched: torch.Tensor
    counts: list[int]
    targets: torch.Tensor
    positive_counts: list[int]

    def positives(self) -> torch.Tensor:
        """Indices ``[P]`` of the positive RoIs, image by image (no GPU sync: P is known)."""
        return _indices(self.labels > 0, sum(self.positive_counts))


class BoxStage(nn.Module):
    """Proposals → detections (eval) or Fast R-CNN losses (train)."""

    def __init__(
        self,
        cfg: BoxStageConfig,
        in_feature_info: list,
        num_classes: int,
        features_path: str = "model.backbone",
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.roi_extractor = build_extractor(
            cfg.roi_extractor, in_feature_info, features_path, "model.roi_box.roi_extractor"
        )
        self.head = build_child(
            "head",
            cfg.head,
            in_channels=self.roi_extractor.out_channels,
            resolution=self.roi_extractor.output_size,
            num_classes=num_classes,
        )
        self.matcher = build_child("matcher", cfg.matcher)
        self.box_coder = build_child("box_coder", cfg.box_coder)
        self.sampler = build_child("sampler", cfg.sampler)
        self.loss = build_child("loss", cfg.loss)
        self.loss_slot = Slot.of("loss", cfg.loss, "model.roi_box.loss")
        self.postprocessor = build_child(
            "postprocessor", cfg.postprocessor, box_coder=self.box_coder
        )

    def sample(self, proposals: list[torch.Tensor], gt: GroundTruth) -> Sampled:
        """Match proposals (+ gt boxes) to gt, sample them, encode their regression targets."""
        gt_boxes, gt_labels = gt.boxes, gt.labels
        refs, ref_valid = _pad_boxes(proposals, gt_boxes.device)
        if self.cfg.add_gt_as_proposals:
            refs = torch.cat([refs, gt_boxes.to(refs)], dim=1)
            ref_valid = torch.cat([ref_valid, gt.valid], dim=1)
        matched = self.matcher(Anchors.single_level(refs), gt).matched
        matched = matched.masked_fill(~ref_valid, self.matcher.IGNORE)
        positive, negative = self.sampler(matched)
        chosen = positive | negative
        # The one host read of a train step's RoI stage: how many RoIs each image keeps (the
        # RoI extractor takes per-image lists); every selection below reuses the counts.
        counts, positive_counts = torch.stack([chosen.sum(1), positive.sum(1)]).tolist()
        image, index = _indices(chosen, sum(counts), dims=2)
        labels = torch.where(positive, gather_rows(gt_labels, matched), 0)[image, index]
        boxes = refs[image, index]
        targets = self.box_coder.encode(gather_rows(gt_boxes, matched)[image, index], boxes)
        matched = matched.clamp(min=0)[image, index]
        return Sampled(boxes, labels, matched, counts, targets, positive_counts)

    def predict(
        self,
        features: dict[str, torch.Tensor],
        boxes: list[torch.Tensor],
        image_sizes: list[tuple[int, int]],
    ) -> dict[str, torch.Tensor]:
        pooled = self.roi_extractor(features, boxes, image_sizes)
        return self.head(pooled)

    def losses(
        self,
        features: dict[str, torch.Tensor],
        sampled: Sampled,
        image_sizes: list[tuple[int, int]],
    ) -> dict[str, torch.Tensor]:
        out = self.predict(features, list(sampled.boxes.split(sampled.counts)), image_sizes)
        terms = self.loss(out["cls_logits"], out["bbox_deltas"], sampled.labels, sampled.targets)
        return check_loss_terms(self.loss_slot, terms)

    def detect(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_sizes: list[tuple[int, int]],
    ) -> list[dict[str, torch.Tensor]]:
        """Head outputs per proposal, padded to ``[B,R,...]`` → postprocessed detections."""
        out = self.predict(features, proposals, image_sizes)
        counts = [p.shape[0] for p in proposals]
        refs, valid = _pad_boxes(proposals, out["cls_logits"].device)
        padded = {
            key: pad_sequence(list(out[key].split(counts)), batch_first=True)
            for key in ("cls_logits", "bbox_deltas")
        }
        predictions = {**padded, "valid": valid}
        return self.postprocessor(predictions, Anchors.single_level(refs), image_sizes)

    def export_detect(
        self,
        features: dict[str, torch.Tensor],
        proposals: torch.Tensor,
        valid: torch.Tensor,
        image_size: tuple[int, int],
    ) -> dict[str, torch.Tensor]:
        """``detect`` for an exported graph: padded ``proposals [B,P,4]`` (``valid [B,P]``)
        → the fixed detection layout (``padded.padded_nms``; boxes in batch pixels)."""
        b, p = valid.shape
        out = self.head(
            self.roi_extractor.export_pool(features, _batch_rois(proposals), image_size)
        )
        predictions = {
            "cls_logits": out["cls_logits"].reshape(b, p, -1),
            "bbox_deltas": out["bbox_deltas"].reshape(b, p, -1),
            "valid": valid,
        }
        return self.postprocessor.export_detections(
            predictions, Anchors.single_level(proposals), image_size
        )


class MaskStage(nn.Module):
    """Boxes → mask logits; mask loss (train) or per-detection mask probabilities (eval)."""

    def __init__(
        self,
        cfg: MaskStageConfig,
        in_feature_info: list,
        num_classes: int,
        features_path: str = "model.backbone",
    ) -> None:
        super().__init__()
        self.roi_extractor = build_extractor(
            cfg.roi_extractor, in_feature_info, features_path, "model.roi_mask.roi_extractor"
        )
        self.head = build_child(
            "head", cfg.head, in_channels=self.roi_extractor.out_channels, num_classes=num_classes
        )
        self.loss = build_child("loss", cfg.loss)
        self.loss_slot = Slot.of("loss", cfg.loss, "model.roi_mask.loss")
        self.paste = build_child("postprocessor", cfg.paste)

    def _logits(self, features: dict, boxes: list[torch.Tensor], sizes: list) -> torch.Tensor:
        return self.head(self.roi_extractor(features, boxes, sizes))["mask_logits"]

    def losses(
        self,
        features: dict[str, torch.Tensor],
        sampled: Sampled,
        image_sizes: list[tuple[int, int]],
        gt_masks: list[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        keep, counts = sampled.positives(), sampled.positive_counts
        boxes = list(sampled.boxes[keep].split(counts))
        logits = self._logits(features, boxes, image_sizes)
        matched = list(sampled.matched[keep].split(counts))
        targets = _mask_targets(gt_masks, boxes, matched, logits.shape[-1])
        return check_loss_terms(self.loss_slot, self.loss(logits, sampled.labels[keep], targets))

    def detect(
        self,
        features: dict[str, torch.Tensor],
        detections: list[dict[str, torch.Tensor]],
        image_sizes: list[tuple[int, int]],
    ) -> list[dict[str, torch.Tensor]]:
        """Adds ``masks [K,1,M,M]`` (sigmoid of the detected class's logits) to each result."""
        boxes = [d["boxes"] for d in detections]
        logits = self._logits(features, boxes, image_sizes)
        labels = torch.cat([d["labels"] for d in detections])
        probs = logits[torch.arange(labels.shape[0], device=labels.device), labels].sigmoid()
        masks = probs[:, None].split([b.shape[0] for b in boxes])
        return [{**d, "masks": m} for d, m in zip(detections, masks)]

    def export_masks(
        self,
        features: dict[str, torch.Tensor],
        detections: dict[str, torch.Tensor],
        image_size: tuple[int, int],
    ) -> torch.Tensor:
        """``detect`` for an exported graph: the fixed detection layout (``boxes [B,D,4]``
        batch pixels, ``labels [B,D]``) → mask probabilities ``[B,D,1,M,M]`` of the detected
        classes (padding rows included; the caller zeroes them)."""
        boxes, labels = detections["boxes"], detections["labels"]
        b, d = labels.shape
        pooled = self.roi_extractor.export_pool(features, _batch_rois(boxes), image_size)
        logits = self.head(pooled)["mask_logits"]  # [B·D,C+1,M,M]
        index = labels.reshape(-1, 1, 1, 1).expand(-1, 1, *logits.shape[-2:])
        return logits.gather(1, index).sigmoid().reshape(b, d, 1, *logits.shape[-2:])


def build_extractor(node: Any, info: list, features_path: str, default_path: str) -> Any:
    """Build an RoI extractor after checking the feature names it pools from.

    ``featmap_names`` (multi-level) or ``featmap_name`` (single level) must name features of
    ``info`` (what ``features_path``, the neck or backbone, produces).
    """
    params = getattr(node, "params", node)
    path = node_path(node, default_path)
    for key in ("featmap_names", "featmap_name"):
        names = params.get(key)
        if names is not None:
            names = (names,) if isinstance(names, str) else tuple(names)
            check_feature_names(names, f"{path}.{key}", info, features_path)
    return build_child("roi_extractor", node, in_feature_info=tuple(info))


def _indices(mask: torch.Tensor, count: int, dims: int = 1) -> Any:
    """``mask.nonzero()`` with its size ``count`` known on the host: no GPU sync.

    ``dims=1``: ``[count]`` indices into the flattened mask; ``dims=2`` (a ``[B,N]`` mask): the
    pair (row ``[count]``, column ``[count]``), row-major like ``nonzero``.
    """
    flat = torch.nonzero_static(mask.reshape(-1), size=count)[:, 0]
    if dims == 1:
        return flat
    return flat // mask.shape[1], flat % mask.shape[1]


def _batch_rois(boxes: torch.Tensor) -> torch.Tensor:
    """Padded ``boxes [B,N,4]`` → torchvision.ops' ``[B·N,5]`` (image index, x1, y1, x2, y2)."""
    b, n = boxes.shape[:2]
    image = torch.arange(b, device=boxes.device, dtype=boxes.dtype)[:, None, None]
    return torch.cat([image.expand(b, n, 1), boxes], dim=2).reshape(b * n, 5)


def _pad_boxes(
    boxes: list[torch.Tensor], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image ``[R_i,4]`` → ``[B,R,4]`` zero-padded and valid ``[B,R]``."""
    if not boxes:
        return torch.zeros(0, 0, 4, device=device), torch.zeros(0, 0, dtype=torch.bool)
    padded = pad_sequence([b.reshape(-1, 4) for b in boxes], batch_first=True)
    ones = [torch.ones(b.shape[0], dtype=torch.bool, device=b.device) for b in boxes]
    return padded, pad_sequence(ones, batch_first=True, padding_value=False)


def _mask_targets(
    gt_masks: list[torch.Tensor],
    boxes: list[torch.Tensor],
    matched: list[torch.Tensor],
    size: int,
) -> torch.Tensor:
    """Each positive's gt mask cropped to its box and resized to ``size×size`` (``[P,M,M]``).

    torchvision's ``project_masks_on_boxes``: RoIAlign of the gt mask (scale 1). One call per
    image because gt masks of different images differ in size; zero-padding them into one
    batch would change the bilinear samples at the image border.
    """
    out = []
    for masks, bx, idx in zip(gt_masks, boxes, matched):
        if bx.shape[0] == 0:
            continue
        rois = torch.cat([idx[:, None].to(bx), bx], dim=1)
        out.append(roi_align(masks[:, None].to(rois), rois, (size, size), 1.0)[:, 0])
    if not out:
        ref = boxes[0] if boxes else torch.zeros(0)
        return ref.new_zeros((0, size, size))
    return torch.cat(out)
