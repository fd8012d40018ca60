"""``set_prediction``: the query-based detector skeleton (DETR, Deformable DETR by spec).

Named stages, every collaborator a spec component:
``prepare_batch`` (checks, preprocess, padded ``GroundTruth``) → ``features`` (backbone) →
``project`` (a 1x1 conv per level to the transformer's width D, + GroupNorm if asked, + extra
stride-2 levels from the last map) with each level's padding ``masks`` and ``positions``
(a ``positional_encoding``) → ``transformer`` (a ``set_transformer``: encoder over the
levels, decoder over Q queries) → ``head`` (a ``set_head``: class logits and cxcywh boxes of
every decoder layer), then in train mode ``assign`` (the ``matcher``, one-to-one per layer, in
normalised coordinates) → ``loss`` (a ``set_loss``), in eval mode ``postprocessor`` (a
``set_postprocessor``: top-k, no NMS) → rescale to the original image sizes. A two-stage
transformer (``uses_proposer``) calls the head's ``proposer()`` on its encoder proposals;
in train mode those proposals are matched to class-agnostic gt in the same matcher call as the
decoder layers and the loss adds their ``_enc`` terms.

Query groups (Group DETR; ``query_groups`` on the transformer): in train mode a decoding with
``groups`` G > 1 holds G·Q queries; the skeleton folds the groups into the batch (every
layer's ``[B,G·Q,..]`` → ``[B·G,Q,..]``, row ``b·G + g``; ``fold_query_groups``) and repeats
each image's gt G times (``repeat_per_group``), so the matcher still solves every layer of
every group in one call (one host sync) and the loss sees B·G images. Its terms are then the
mean of the G groups' losses, each a one-group model's: N, the gt count the set criterion
normalises by, is G times the batch's (and torch's weighted cross-entropy mean spans the B·G
images, whose groups have equal weight sums). The mean, not the paper's sum, keeps the loss
scale of one group, so the spec's loss weights, learning rate and gradient clipping (0.1
max-norm) mean what they mean with ``query_groups: 1``; the sum is ``G ×`` these terms.
Eval mode decodes group 0 alone: it and export are exactly a one-group model's.

With transformers' weights converted (``tools/convert_weights.py --from transformers``) the
numbers are ``DetrForObjectDetection``'s and ``DeformableDetrForObjectDetection``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import attrs
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert

from anchorage.core import component
from anchorage.core.build import build_child
from anchorage.core.composition import check_background_column
from anchorage.core.config import as_section
from anchorage.core.errors import DataError
from anchorage.core.host_sync import from_host
from anchorage.core.interfaces import Anchors, Assignment, GroundTruth
from anchorage.core.interfaces.set_prediction import EncoderMatch
from anchorage.core.registry import MODELS
from anchorage.core.slots import (
    Slot,
    check_assignment,
    check_decoding,
    check_detections,
    check_loss_terms,
    check_set_predictions,
    checked_proposer,
)
from anchorage.plugins.models.detection_batch import prepare_batch
from anchorage.plugins.models.preprocess import ImagePreprocessor, PreprocessConfig

DETR_PREPROCESS = PreprocessConfig(min_size=(800,), max_size=1333, size_divisible=1)

_TINY = {
    "num_classes": 2,
    "num_queries": 5,
    "preprocess": {"min_size": (64,), "max_size": 96},
    "backbone": {"type": "resnet18", "return_layers": ("layer4",)},
    "transformer": {
        "type": "detr_transformer",
        "hidden_dim": 16,
        "num_heads": 2,
        "encoder_layers": 1,
        "decoder_layers": 2,
        "ffn_dim": 32,
    },
}


def _default(kind: str, data: dict, role: str | None = None) -> Any:
    return component(kind, role=role, factory=lambda: dict(data))


@MODELS.register("set_prediction", examples=(_TINY,))
class SetPredictionDetector(nn.Module):
    """Query-based (set-prediction) detector with torchvision detection I/O.

    ``forward(images, targets=None)``: ``images`` list of float ``[3,H_i,W_i]`` in 0..1.
    Train mode: ``targets[i]`` has ``boxes [N,4]`` xyxy pixels and ``labels [N]`` int64 in
    1..C (optional ``iscrowd [N]``, never matched); returns the loss's ``loss_*`` terms (every
    decoder layer's with ``aux_loss``, the last one's otherwise). Eval mode: one dict per image
    with ``boxes [K,4]`` (original pixels), ``scores [K]``, ``labels [K]``.

    The transformer declares the width D (``hidden_dim``); the skeleton injects it into the
    input projection, the positional encoding and the head, so their sizes agree by
    construction. ``num_queries`` Q bounds the objects per image: an image with more gt
    boxes than queries is a ``DataError`` (the trainer checks the training set up front).
    """

    @attrs.frozen(kw_only=True)
    class Config:
        num_classes: int = attrs.field(validator=attrs.validators.ge(1))
        num_queries: int = attrs.field(default=100, validator=attrs.validators.ge(1))
        backbone: Any = component("backbone")
        positional_encoding: Any = _default(
            "positional_encoding", {"type": "sine"}, "positional_encoding"
        )
        transformer: Any = _default("transformer", {"type": "detr_transformer"}, "set_transformer")
        head: Any = _default("head", {"type": "detr_head"}, "set_head")
        matcher: Any = _default("matcher", {"type": "hungarian"})
        loss: Any = _default("loss", {"type": "set_criterion"}, "set_loss")
        postprocessor: Any = _default("postprocessor", {"type": "set_topk"}, "set_postprocessor")
        projection_norm: Literal["none", "group_norm"] = "none"
        extra_levels: int = attrs.field(default=0, validator=attrs.validators.ge(0))
        aux_loss: bool = True
        preprocess: PreprocessConfig = DETR_PREPROCESS

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.num_classes = cfg.num_classes
        self.num_queries = cfg.num_queries
        self.aux_loss = cfg.aux_loss
        self.preprocess = ImagePreprocessor(
            as_section(PreprocessConfig, cfg.preprocess, "model.preprocess")
        )
        self.backbone = build_child("backbone", cfg.backbone)
        channels = [f.channels for f in self.backbone.feature_info]
        levels = len(channels) + cfg.extra_levels
        self.transformer = build_child(
            "transformer", cfg.transformer, num_queries=cfg.num_queries, num_levels=levels
        )
        dim = self.transformer.hidden_dim
        self.input_projection = InputProjection(
            channels, dim, cfg.extra_levels, cfg.projection_norm
        )
        self.positional_encoding = build_child(
            "positional_encoding", cfg.positional_encoding, dim=dim
        )
        self.num_layers = self.transformer.num_decoder_layers
        self.head = build_child(
            "head",
            cfg.head,
            hidden_dim=dim,
            num_classes=cfg.num_classes,
            num_layers=self.num_layers,
            **({"encoder_proposals": True} if self.transformer.uses_proposer else {}),
        )
        self.matcher = build_child("matcher", cfg.matcher)
        self.loss = build_child("loss", cfg.loss)
        self.postprocessor = build_child("postprocessor", cfg.postprocessor)
        self.slots = {
            name: Slot.of(kind, getattr(cfg, name), f"model.{name}")
            for name, kind in (
                ("transformer", "transformer"), ("head", "head"), ("matcher", "matcher"),
                ("loss", "loss"), ("postprocessor", "postprocessor"),
            )
        }  # fmt: skip
        check_background_column(
            ("head", cfg.head, self.head),
            ("matcher", cfg.matcher, self.matcher),
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
            model="set_prediction",
            num_classes=self.num_classes,
            training=self.training,
        )
        predictions = self.predict(batch.images, batch.image_sizes)
        if self.training:
            groups = predictions["logits"].shape[2] // self.num_queries  # 1 without groups
            gt = repeat_per_group(self.normalised_gt(batch.gt, batch.image_sizes), groups)
            predictions = fold_query_groups(predictions, groups)
            first = 0 if self.aux_loss else self.num_layers - 1
            layers = [
                {"logits": predictions["logits"][i], "boxes": predictions["boxes"][i]}
                for i in range(first, self.num_layers)
            ]
            encoder = encoder_predictions(predictions)
            assignments = self.assign(layers, gt, encoder)
            extra = {}
            if encoder is not None:  # the last assignment is the encoder proposals'
                extra["encoder"] = EncoderMatch(encoder, assignments.pop(), gt.class_agnostic())
            terms = self.loss(layers, assignments, gt, **extra)
            return check_loss_terms(self.slots["loss"], terms)
        last = {"logits": predictions["logits"][-1], "boxes": predictions["boxes"][-1]}
        detections = check_detections(
            self.slots["postprocessor"],
            self.postprocessor(last, batch.image_sizes),
            len(batch.image_sizes),
        )
        return self.preprocess.postprocess(detections, batch.image_sizes, batch.original_sizes)

    def predict(
        self, images: torch.Tensor, image_sizes: Sequence[tuple[int, int]]
    ) -> dict[str, torch.Tensor]:
        """Batch tensor ``[B,3,H,W]`` → ``logits [L,B,Q,K]``, ``boxes [L,B,Q,4]`` cxcywh 0..1
        (two-stage: also the encoder proposals' ``encoder_logits [B,S,K]``, ``encoder_boxes
        [B,S,4]``). With G query groups, in train mode, G·Q queries group-major."""
        return self.decode(images, padding_mask(images, image_sizes))

    def decode(self, images: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """``predict`` given the batch's padding ``mask [B,H,W]`` (True at padding)."""
        features = list(self.backbone(images).values())
        projected = self.input_projection(features)
        masks = [level_mask(mask, p.shape[-2:]) for p in projected]
        positions = [self.positional_encoding(m).to(p.dtype) for m, p in zip(masks, projected)]
        refine = self.head.refiner() if self.transformer.uses_refiner else None
        hooks = {}
        if self.transformer.uses_proposer:
            hooks["propose"] = checked_proposer(self.slots["head"], self.head.proposer())
        decoding = check_decoding(
            self.slots["transformer"],
            self.transformer(projected, masks, positions, refine, **hooks),
            self.num_layers,
            images.shape[0],
            self.num_queries,
            training=self.training,
        )
        predictions = check_set_predictions(
            self.slots["head"],
            self.head(decoding),
            self.num_layers,
            images.shape[0],
            decoding.groups * self.num_queries,
        )
        if decoding.encoder_logits is not None:
            predictions["encoder_logits"] = decoding.encoder_logits
            predictions["encoder_boxes"] = decoding.encoder_boxes
        return predictions

    def normalised_gt(self, gt: GroundTruth, image_sizes: Sequence[tuple[int, int]]) -> GroundTruth:
        """The batch's gt with boxes xyxy in 0..1 of each image's own size; refuses an image
        with more boxes than queries."""
        if gt.boxes.shape[1] > self.num_queries:
            raise DataError(
                f"set_prediction: a batch image has {gt.boxes.shape[1]} gt boxes but "
                f"model.num_queries is {self.num_queries}; each object needs its own query"
            )
        scale = from_host([[w, h, w, h] for h, w in image_sizes], device=gt.boxes.device)
        return GroundTruth(gt.boxes / scale[:, None, :], gt.labels, gt.valid)

    def assign(
        self,
        layers: list[dict[str, torch.Tensor]],
        gt: GroundTruth,
        encoder: dict[str, torch.Tensor] | None = None,
    ) -> list[Assignment]:
        """One matcher call for every layer at once (the layers stacked along the batch), so a
        matcher that syncs with the host (the Hungarian one) does so once per step.

        ``encoder``: a two-stage model's proposals (``logits [B,S,K]``, ``boxes [B,S,4]``),
        matched to ``gt.class_agnostic()``; their assignment (``matched [B,S]``) comes last.
        They join the layers' call through the matcher's ``match_groups`` when it has one (a
        second call otherwise)."""
        n, (b, q) = len(layers), layers[0]["boxes"].shape[:2]
        stacked = {
            key: torch.cat([layer[key] for layer in layers]).detach() for key in ("logits", "boxes")
        }
        repeated = GroundTruth(
            gt.boxes.repeat(n, 1, 1), gt.labels.repeat(n, 1), gt.valid.repeat(n, 1)
        )
        groups = [(stacked, repeated, n * b, q)]
        if encoder is not None:
            proposals = {key: value.detach() for key, value in encoder.items()}
            groups.append((proposals, gt.class_agnostic(), b, proposals["boxes"].shape[1]))
        problems = [
            (Anchors.single_level(box_convert(p["boxes"], "cxcywh", "xyxy")), g, p)
            for p, g, _, _ in groups
        ]
        with torch.no_grad():
            if hasattr(self.matcher, "match_groups"):
                outs = self.matcher.match_groups(problems)
            else:
                outs = [self.matcher(a, g, predictions=p) for a, g, p in problems]
        slot = self.slots["matcher"]
        checked = [check_assignment(slot, out, g[2], g[3]) for out, g in zip(outs, groups)]
        layer_out = checked[0]
        matched = layer_out.matched.split(b)
        weights = (None,) * n if layer_out.weights is None else layer_out.weights.split(b)
        return [Assignment(m, w) for m, w in zip(matched, weights)] + checked[1:]

    def check_training_data(self, dataset: Any, where: str = "data.train") -> None:
        """Refuse a training set with an image holding more objects than ``num_queries``
        (read from the dataset's records; datasets without records are checked per batch)."""
        records = getattr(_unwrap(dataset), "records", None)
        if records is None:
            return
        counts = [len(r.boxes) for r in records]
        over = [c for c in counts if c > self.num_queries]
        if over:
            raise DataError(
                f"model.num_queries: {self.num_queries} queries, but {len(over)} image(s) of "
                f"{where} hold more objects (up to {max(over)}); raise model.num_queries to at "
                f"least {max(over)}"
            )

    def export_forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eval mode for an exported graph (``anchorage.core.deploy``): ``images`` float
        ``[B,3,H,W]`` in 0..1 → the fixed detection layout of ``postprocess.padded`` (boxes
        xyxy in input pixels): ``boxes [B,D,4]``, ``scores [B,D]``, ``labels [B,D]``,
        ``num_detections [B]``, D from the postprocessor (``export_detections``).

        ``decode`` with the padding mask of one shared size: every image of an
        exported batch has the same ``(h, w)`` after the resize, so the mask is True only at
        the ``size_divisible`` padding of the batch tensor (none with a fixed-size resize) —
        the mask eager mode builds for a batch of that size."""
        x, size = self.preprocess.export_batch(images)
        rows = torch.arange(x.shape[-2], device=x.device) >= size[0]
        cols = torch.arange(x.shape[-1], device=x.device) >= size[1]
        predictions = self.decode(x, (rows[:, None] | cols[None, :]).expand(x.shape[0], -1, -1))
        last = {"logits": predictions["logits"][-1], "boxes": predictions["boxes"][-1]}
        found = self.postprocessor.export_detections(last, size)
        found["boxes"] = self.preprocess.export_rescale(found["boxes"], size, images.shape[-2:])
        return found

    def export_info(self) -> dict[str, Any]:
        """The exported graph's input pipeline and output kind (``anchorage.core.deploy``)."""
        return self.preprocess.detection_export_info(self.num_classes)


def encoder_predictions(predictions: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """A two-stage model's encoder proposals from ``predict``'s output as a layer dict
    (``logits [B,S,K]``, ``boxes [B,S,4]`` cxcywh 0..1), or None."""
    if "encoder_logits" not in predictions:
        return None
    return {"logits": predictions["encoder_logits"], "boxes": predictions["encoder_boxes"]}


def fold_query_groups(predictions: dict[str, torch.Tensor], groups: int) -> dict[str, torch.Tensor]:
    """G query groups into the batch: ``logits [L,B,G·Q,K]`` → ``[L,B·G,Q,K]`` and ``boxes
    [L,B,G·Q,4]`` → ``[L,B·G,Q,4]`` (row ``b·G + g`` is image b's group g; a reshape, no
    copy of contiguous predictions); other keys and ``groups`` 1 pass unchanged."""
    if groups == 1:
        return predictions
    out = dict(predictions)
    for key in ("logits", "boxes"):
        x = predictions[key]
        out[key] = x.reshape(x.shape[0], x.shape[1] * groups, x.shape[2] // groups, x.shape[3])
    return out


def repeat_per_group(gt: GroundTruth, groups: int) -> GroundTruth:
    """Each image's gt once per query group, in ``fold_query_groups``' order: ``[B,N,..]`` →
    ``[B·G,N,..]`` (row ``b·G + g`` is image b's gt); ``groups`` 1 returns ``gt``."""
    if groups == 1:
        return gt
    return GroundTruth(
        *(t.repeat_interleave(groups, dim=0) for t in (gt.boxes, gt.labels, gt.valid))
    )


def _unwrap(dataset: Any) -> Any:
    while not hasattr(dataset, "records") and hasattr(dataset, "dataset"):
        dataset = dataset.dataset
    return dataset


class InputProjection(nn.Module):
    """Backbone levels → D channels: a 1x1 conv per level, then ``extra_levels`` 3x3 stride-2
    convs (the first on the last backbone map, the next on the previous extra level), each
    followed by GroupNorm(32) with ``norm: group_norm`` (Deformable DETR's projection)."""

    def __init__(self, channels: list[int], dim: int, extra_levels: int, norm: str) -> None:
        super().__init__()

        def block(conv: nn.Conv2d) -> nn.Module:
            if norm == "none":
                return conv
            nn.init.xavier_uniform_(conv.weight, gain=1)
            nn.init.zeros_(conv.bias)
            return nn.Sequential(conv, nn.GroupNorm(32, dim))

        self.levels = nn.ModuleList(block(nn.Conv2d(c, dim, 1)) for c in channels)
        extra_in = [channels[-1]] + [dim] * max(extra_levels - 1, 0)
        self.extra = nn.ModuleList(
            block(nn.Conv2d(c, dim, 3, stride=2, padding=1)) for c in extra_in[:extra_levels]
        )

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        out = [proj(f) for proj, f in zip(self.levels, features)]
        source = features[-1]
        for i, proj in enumerate(self.extra):
            source = proj(source if i == 0 else out[-1])
            out.append(source)
        return out


def padding_mask(images: torch.Tensor, image_sizes: Sequence[tuple[int, int]]) -> torch.Tensor:
    """bool ``[B,H,W]``: True outside each image's ``(h, w)`` in the padded batch."""
    sizes = from_host(list(image_sizes), device=images.device)
    rows = torch.arange(images.shape[-2], device=images.device)
    cols = torch.arange(images.shape[-1], device=images.device)
    inside = (rows[None, :, None] < sizes[:, 0, None, None]) & (
        cols[None, None, :] < sizes[:, 1, None, None]
    )
    return ~inside


def level_mask(mask: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """The padding mask at a feature level's ``(h, w)``: nearest-neighbour resampling of the
    valid pixels (DETR's rule)."""
    valid = F.interpolate((~mask)[None].float(), size=tuple(size)).to(torch.bool)[0]
    return ~valid
