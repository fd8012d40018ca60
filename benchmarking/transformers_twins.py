"""transformers twins of ``set_prediction`` specs: ``hf:detr``, ``hf:deformable_detr``,
``hf:deformable_detr_refine``.

A twin is transformers' ``DetrForObjectDetection`` / ``DeformableDetrForObjectDetection``
(``_refine``: ``with_box_refine``) with random weights, its config derived from the spec entry
it mirrors (the one naming it as its twin): width, heads, layers, FFN width, dropout, queries,
classes, feature levels, sampling points, box refinement, matching costs and loss weights, and
its non-timm ResNet (``use_timm_backbone=False``: depth, block type, ``out_features`` from the
backbone's ``return_layers``). The ResNet keeps only the stages up to the last returned one,
as anchorage's feature extractor does (transformers' ``ResNetBackbone`` would run every stage
and drop the rest), and its parameters train as the spec's ``trainable_layers`` say
(transformers freezes them all: its check looks for ``stage.1`` in names that read
``stages.1``). transformers freezes every BatchNorm, so a twin needs ``norm: frozen_bn``.
What a twin cannot mirror (another layer type, a learned query content, ...) is a
``SpecError`` naming the key.

``TransformersDetector`` gives the twin anchorage's model I/O. It preprocesses with the
spec's own ``ImagePreprocessor`` (resize, normalise, pad) and passes the padding as
``pixel_mask`` (1 on image pixels), so both pipelines see the same tensor. Train mode: the
targets become transformers' ``labels`` (``class_labels`` = label − 1, boxes cxcywh in 0..1
of each resized image) and the loss is transformers' own (its Hungarian matcher, once per
decoder layer), returned as its weighted terms (``loss_ce``, ``loss_bbox``, ``loss_giou``
and ``_i`` per auxiliary layer; they sum to its ``loss``). Eval mode: the image processor's
``post_process_object_detection`` at the original sizes, labels + 1 (anchorage's 1..C),
detections best first. transformers' DETR feeds each decoder layer's LayerNorm output to the
next one when ``auxiliary_loss`` is on (the original DETR, and anchorage, do not): the twin
switches it on in train mode only, so its detections equal the spec model's and its train
step does transformers' work.

Differences left: transformers' classification loss weight is fixed at 1 (the spec's
``loss.class_weight`` only scales that term); DETR keeps detections scoring above the
threshold, ``set_topk`` those at or above it. transformers is a test extra, imported only
when an ``hf:`` entry is asked for.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import nn

from anchorage.core.config import ComponentSpec
from anchorage.core.errors import AnchorageError, SpecError
from anchorage.core.spec import Spec

HF_PREFIX = "hf:"
HF_BASELINES: dict[str, tuple[str, bool]] = {
    "detr": ("detr_transformer", False),
    "deformable_detr": ("deformable_detr_transformer", False),
    "deformable_detr_refine": ("deformable_detr_transformer", True),
}
"""``hf:NAME`` → (the spec's transformer type it mirrors, with box refinement)."""

_RESNETS = {
    "resnet18": ("basic", (2, 2, 2, 2), (64, 128, 256, 512)),
    "resnet34": ("basic", (3, 4, 6, 3), (64, 128, 256, 512)),
    "resnet50": ("bottleneck", (3, 4, 6, 3), (256, 512, 1024, 2048)),
    "resnet101": ("bottleneck", (3, 4, 23, 3), (256, 512, 1024, 2048)),
}
_TRAINABLE_ORDER = ("stages.3.", "stages.2.", "stages.1.", "stages.0.", "embedder.")
"""transformers' ResNet names for torchvision's ``layer4 .. layer1, conv1`` (+ bn1)."""


def require_transformers() -> Any:
    """The ``transformers`` module, or an error saying how to install it."""
    try:
        import transformers
    except ImportError:
        raise AnchorageError(
            "hf: benchmark entries need the transformers package, which is not installed: "
            "pip install transformers"
        ) from None
    return transformers


def hf_arch(source: str) -> str:
    """``hf:NAME`` → NAME, checked against ``HF_BASELINES``."""
    name = source[len(HF_PREFIX) :]
    if name not in HF_BASELINES:
        known = ", ".join(HF_PREFIX + n for n in HF_BASELINES)
        raise AnchorageError(f"unknown transformers baseline {source!r}; known: {known}")
    return name


def mirrors(arch: str, spec: Spec) -> bool:
    """Whether ``spec``'s model is the kind of model ``hf:arch`` can mirror."""
    if spec.model.type != "set_prediction":
        return False
    transformer = _params(_model(spec)["transformer"], "transformer")
    kind, refine = HF_BASELINES[arch]
    return transformer["type"] == kind and bool(transformer.get("with_box_refine")) == refine


# ---------------------------------------------------------------------------------------------
# config derivation


@attrs.frozen(kw_only=True)
class TwinPlan:
    """What a twin is built from: transformers config arguments and the adapter's settings."""

    arch: str
    config: dict[str, Any]
    backbone: dict[str, Any]
    trainable_layers: int
    aux_loss: bool
    threshold: float
    top_k: int


def _model(spec: Spec) -> dict[str, Any]:
    return _params(spec.model, "model")


def _params(node: Any, kind: str) -> dict[str, Any]:
    """A component's parameters with its registered config's defaults filled in (+ ``type``)."""
    from anchorage.core.registry import registry_for

    if isinstance(node, ComponentSpec):
        name, given = node.type, dict(node.params)
    else:
        name, given = node["type"], {k: v for k, v in node.items() if k != "type"}
    out: dict[str, Any] = {"type": name}
    for field in attrs.fields(registry_for(kind).get(name).config):
        if field.name in given:
            out[field.name] = given[field.name]
        elif isinstance(field.default, attrs.Factory):
            out[field.name] = field.default.factory()
        elif field.default is not attrs.NOTHING:
            out[field.name] = field.default
    return out


def _require(ok: bool, source: str, spec: Spec, key: str, want: str, got: Any) -> None:
    if not ok:
        raise SpecError(
            f"{source} mirrors {spec.path or 'the spec'}: {key}: a transformers twin needs "
            f"{want}, got {got!r}"
        )


def plan_twin(source: str, spec: Spec) -> TwinPlan:
    """Check that ``spec`` has a transformers twin ``source`` and derive its config."""
    arch = hf_arch(source)
    kind, refine = HF_BASELINES[arch]
    deformable = kind == "deformable_detr_transformer"
    need = lambda ok, key, want, got: _require(ok, source, spec, key, want, got)  # noqa: E731
    need(spec.model.type == "set_prediction", "model.type", "set_prediction", spec.model.type)
    m = _model(spec)
    backbone = _backbone(m, need)
    config = {
        "num_labels": m["num_classes"],
        "num_queries": m["num_queries"],
        "auxiliary_loss": m["aux_loss"],
        **_transformer(m, kind, refine, need),
        **_positions(m, deformable, need),
        **_costs(m, deformable, need),
    }
    norm = "group_norm" if deformable else "none"
    need(m["projection_norm"] == norm, "model.projection_norm", norm, m["projection_norm"])
    if deformable:
        config["num_feature_levels"] = len(backbone["out_features"]) + m["extra_levels"]
    else:
        need(m["extra_levels"] == 0, "model.extra_levels", 0, m["extra_levels"])
    post = _params(m["postprocessor"], "postprocessor")
    select = "topk" if deformable else "per_query"
    need(post["select"] == select, "model.postprocessor.select", select, post["select"])
    return TwinPlan(
        arch=arch,
        config=config,
        backbone=backbone,
        trainable_layers=_params(m["backbone"], "backbone")["trainable_layers"],
        aux_loss=bool(m["aux_loss"]),
        threshold=float(post["score_threshold"]),
        top_k=int(post["topk"]),
    )


def _transformer(m: Mapping[str, Any], kind: str, refine: bool, need: Any) -> dict[str, Any]:
    """Widths, heads, layers, dropout (transformers' three: residual, attention, activation),
    and Deformable DETR's points and box refinement; the layers must be the default ones."""
    tr = _params(m["transformer"], "transformer")
    key = "model.transformer"
    need(tr["type"] == kind, f"{key}.type", kind, tr["type"])
    deformable = kind == "deformable_detr_transformer"
    activations = set()
    for layer in ("encoder_layer", "decoder_layer"):
        p = _params(tr[layer], "transformer_layer")
        default = ("deformable_" if deformable else "detr_") + layer
        need(p["type"] == default, f"{key}.{layer}.type", default, p["type"])
        need(not p.get("pre_norm"), f"{key}.{layer}.pre_norm", False, True)
        activations.add(p.get("activation", "relu"))
    need(len(activations) == 1, f"{key}.decoder_layer.activation", "the encoder's", activations)
    groups = tr.get("query_groups", 1)
    need(groups == 1, f"{key}.query_groups", 1, groups)  # train-time only; no twin has them
    out = {
        "d_model": tr["hidden_dim"],
        "encoder_layers": tr["encoder_layers"],
        "decoder_layers": tr["decoder_layers"],
        "encoder_attention_heads": tr["num_heads"],
        "decoder_attention_heads": tr["num_heads"],
        "encoder_ffn_dim": tr["ffn_dim"],
        "decoder_ffn_dim": tr["ffn_dim"],
        "dropout": tr["dropout"],
        "attention_dropout": tr["dropout"],
        "activation_dropout": tr["dropout"],
        "activation_function": activations.pop(),
    }
    if not deformable:
        need(tr["query_init"] == "zeros", f"{key}.query_init", "zeros", tr["query_init"])
        return out
    need(tr["with_box_refine"] == refine, f"{key}.with_box_refine", refine, tr["with_box_refine"])
    need(not tr.get("two_stage"), f"{key}.two_stage", False, tr.get("two_stage"))
    return out | {
        "encoder_n_points": tr["encoder_points"],
        "decoder_n_points": tr["decoder_points"],
        "with_box_refine": refine,
        "two_stage": False,
    }


def _positions(m: Mapping[str, Any], deformable: bool, need: Any) -> dict[str, Any]:
    pos = _params(m["positional_encoding"], "positional_encoding")
    key = "model.positional_encoding"
    need(pos["type"] in ("sine", "learned"), f"{key}.type", "sine or learned", pos["type"])
    if pos["type"] == "sine":
        offset = -0.5 if deformable else 0.0
        need(pos["offset"] == offset, f"{key}.offset", offset, pos["offset"])
        need(pos["normalize"], f"{key}.normalize", True, pos["normalize"])
    else:
        need(pos["max_size"] == 50, f"{key}.max_size", 50, pos["max_size"])
    return {"position_embedding_type": pos["type"]}


def _costs(m: Mapping[str, Any], deformable: bool, need: Any) -> dict[str, Any]:
    """Matching costs and loss weights (transformers' classification weight is fixed at 1)."""
    matcher = _params(m["matcher"], "matcher")
    loss = _params(m["loss"], "loss")
    head = _params(m["head"], "head")
    score = "sigmoid" if deformable else "softmax"
    need(matcher["type"] == "hungarian", "model.matcher.type", "hungarian", matcher["type"])
    need(loss["type"] == "set_criterion", "model.loss.type", "set_criterion", loss["type"])
    need(head["type"] == "detr_head", "model.head.type", "detr_head", head["type"])
    need(head["score"] == score, "model.head.score", score, head["score"])
    need(head["box_layers"] == 3, "model.head.box_layers", 3, head["box_layers"])
    cost = "focal" if deformable else "softmax"
    need(matcher["class_cost"] == cost, "model.matcher.class_cost", cost, matcher["class_cost"])
    classification = "focal" if deformable else "cross_entropy"
    need(loss["classification"] == classification, "model.loss.classification",
         classification, loss["classification"])  # fmt: skip
    weights = {
        "class_cost": ("model.matcher.class_weight", matcher["class_weight"]),
        "bbox_cost": ("model.matcher.l1_weight", matcher["l1_weight"]),
        "giou_cost": ("model.matcher.giou_weight", matcher["giou_weight"]),
        "bbox_loss_coefficient": ("model.loss.l1_weight", loss["l1_weight"]),
        "giou_loss_coefficient": ("model.loss.giou_weight", loss["giou_weight"]),
    }
    out = {}
    for name, (key, value) in weights.items():  # transformers' config types them as int
        need(float(value).is_integer(), key, "a whole number (transformers' int field)", value)
        out[name] = int(value)
    if deformable:
        for key, fixed in (("focal_alpha", 0.25), ("focal_gamma", 2.0)):
            need(matcher[key] == fixed, f"model.matcher.{key}", fixed, matcher[key])
        need(loss["focal_gamma"] == 2.0, "model.loss.focal_gamma", 2.0, loss["focal_gamma"])
        return out | {"focal_alpha": loss["focal_alpha"]}
    return out | {"eos_coefficient": loss["no_object_weight"]}


def _backbone(m: Mapping[str, Any], need: Any) -> dict[str, Any]:
    """transformers ``ResNetConfig`` arguments: the spec's depth, cut after its last level."""
    bb = _params(m["backbone"], "backbone")
    key = "model.backbone"
    need(bb["type"] in _RESNETS, f"{key}.type", " / ".join(_RESNETS), bb["type"])
    need(bb["norm"] == "frozen_bn", f"{key}.norm", "frozen_bn (transformers freezes every "
         "BatchNorm of its backbone)", bb["norm"])  # fmt: skip
    dilation = tuple(bb["replace_stride_with_dilation"])
    need(not any(dilation), f"{key}.replace_stride_with_dilation", "no dilation", dilation)
    need(bb.get("weights_path") is None, f"{key}.weights_path", "none", bb.get("weights_path"))
    layer_type, depths, sizes = _RESNETS[bb["type"]]
    stages = [int(name[len("layer") :]) for name in bb["return_layers"]]
    last = max(stages)
    return {
        "embedding_size": 64,
        "depths": list(depths[:last]),
        "hidden_sizes": list(sizes[:last]),
        "layer_type": layer_type,
        "out_features": [f"stage{s}" for s in stages],
    }


# ---------------------------------------------------------------------------------------------
# building


def build_transformers_twin(source: str, spec: Spec) -> TransformersDetector:
    """The twin ``source`` of ``spec``'s model: random weights (torch's RNG as the caller set
    it), preprocessing by the spec model's own ``preprocess`` module."""
    transformers = require_transformers()
    plan = plan_twin(source, spec)
    with torch.random.fork_rng():  # the spec model is built only for its preprocessor
        donor = spec.model.build()
    preprocess = getattr(donor, "preprocess", None)
    if not isinstance(preprocess, nn.Module):
        raise SpecError(f"{source}: the model of {spec.path} has no 'preprocess' module to share")
    deformable = plan.arch != "detr"
    config_cls = transformers.DeformableDetrConfig if deformable else transformers.DetrConfig
    config = config_cls(
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        backbone_config=transformers.ResNetConfig(**plan.backbone),
        **plan.config,
    )
    if deformable:
        model = transformers.DeformableDetrForObjectDetection(config)
        processor = transformers.DeformableDetrImageProcessor()
    else:
        model = transformers.DetrForObjectDetection(config)
        processor = transformers.DetrImageProcessor()
    _set_trainable(model, plan.trainable_layers)
    return TransformersDetector(model, preprocess, processor, plan)


def _set_trainable(model: nn.Module, trainable_layers: int) -> None:
    """Backbone parameters train as torchvision's ``trainable_layers`` say (layer4 first)."""
    train = _TRAINABLE_ORDER[:trainable_layers]
    for name, param in model.model.backbone.model.named_parameters():
        param.requires_grad_(any(part in name for part in train))


class TransformersDetector(nn.Module):
    """A transformers DETR / Deformable DETR with anchorage's model I/O (see module docstring).

    ``forward(images: list[Tensor[3,H,W]] in 0..1, targets=None)``: train mode → dict of
    transformers' weighted ``loss_*`` terms; eval mode → per image ``boxes [K,4]`` xyxy
    original pixels, ``scores [K]`` best first, ``labels [K]`` in 1..C.
    """

    def __init__(self, model: nn.Module, preprocess: nn.Module, processor: Any, plan: TwinPlan):
        super().__init__()
        self.model = model
        self.preprocess = preprocess
        self.processor = processor
        self.plan = plan
        self.stage_classes = _loss_classes(plan.arch)

    def forward(
        self, images: Sequence[torch.Tensor], targets: list[dict[str, Any]] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        if self.training and targets is None:
            raise ValueError("train mode needs targets (one dict per image)")
        batch = self.preprocess(list(images), targets if self.training else None)
        mask = pixel_mask(batch.images, batch.image_sizes)
        if self.plan.arch == "detr":  # see the module docstring: on in train mode only
            self.model.config.auxiliary_loss = self.training and self.plan.aux_loss
        if not self.training:
            out = self.model(pixel_values=batch.images, pixel_mask=mask)
            return self.postprocess(out, batch.original_sizes)
        labels = [_labels(t, size) for t, size in zip(batch.targets, batch.image_sizes)]
        out = self.model(pixel_values=batch.images, pixel_mask=mask, labels=labels)
        weights = self.loss_weights()
        return {k: v * weights[k] for k, v in out.loss_dict.items() if k in weights}

    def loss_weights(self) -> dict[str, float]:
        """transformers' weight of each loss term (as its ``loss_function`` sums them)."""
        cfg = self.model.config
        base = {
            "loss_ce": 1.0,
            "loss_bbox": cfg.bbox_loss_coefficient,
            "loss_giou": cfg.giou_loss_coefficient,
        }
        out = dict(base)
        if self.plan.aux_loss:
            for i in range(cfg.decoder_layers - 1):
                out |= {f"{k}_{i}": w for k, w in base.items()}
        return out

    def postprocess(
        self, out: Any, original_sizes: list[tuple[int, int]]
    ) -> list[dict[str, torch.Tensor]]:
        """The image processor's detections at the original sizes, best first, labels 1..C."""
        kwargs = {"top_k": self.plan.top_k} if self.plan.arch != "detr" else {}
        found = self.processor.post_process_object_detection(
            out, threshold=self.plan.threshold, target_sizes=original_sizes, **kwargs
        )
        results = []
        for d in found:
            order = d["scores"].argsort(descending=True, stable=True)
            results.append(
                {"boxes": d["boxes"][order], "scores": d["scores"][order],
                 "labels": d["labels"][order] + 1}
            )  # fmt: skip
        return results

    def benchmark_stages(self) -> dict[str, Any]:
        """Stages named as anchorage's: transformers' matcher and criterion are built anew
        in every loss call, so their classes' ``forward`` is timed (see ``stages``)."""
        core = self.model.model
        if self.plan.arch == "detr":
            neck = [core.input_projection]
            heads = [self.model.class_labels_classifier, self.model.bbox_predictor]
        else:
            neck = list(core.input_proj)
            heads = [*self.model.class_embed, *self.model.bbox_embed]
        return {
            "preprocess": [self.preprocess],
            "backbone": [core.backbone],
            "neck": neck,
            "transformer": [core.encoder, core.decoder],
            "head": heads,
            "assign": "stage_classes.matcher.forward",
            "loss": "stage_classes.loss.forward",
            "postprocess": "postprocess",
        }


def _loss_classes(arch: str) -> types.SimpleNamespace:
    """transformers' matcher and criterion classes of ``arch`` (their loss builds instances
    per call; the stage timer wraps the classes' ``forward``)."""
    if arch == "detr":
        from transformers.loss.loss_for_object_detection import HungarianMatcher, ImageLoss

        return types.SimpleNamespace(matcher=HungarianMatcher, loss=ImageLoss)
    from transformers.loss.loss_deformable_detr import (
        DeformableDetrHungarianMatcher,
        DeformableDetrImageLoss,
    )

    return types.SimpleNamespace(
        matcher=DeformableDetrHungarianMatcher, loss=DeformableDetrImageLoss
    )


def pixel_mask(images: torch.Tensor, image_sizes: Sequence[tuple[int, int]]) -> torch.Tensor:
    """int64 ``[B,H,W]``: 1 on each image's ``(h, w)`` in the padded batch, 0 on padding
    (what transformers' image processors give as ``pixel_mask``)."""
    mask = torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.int64, device=images.device)
    for i, (h, w) in enumerate(image_sizes):
        mask[i, :h, :w] = 1
    return mask


def _labels(target: Mapping[str, Any], size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """An anchorage target (boxes xyxy pixels of the resized image, labels 1..C) → transformers'
    (``class_labels`` 0..C−1, ``boxes`` cxcywh in 0..1); crowd boxes are left out."""
    boxes, labels = target["boxes"], target["labels"]
    crowd = target.get("iscrowd")
    if crowd is not None:
        keep = crowd == 0
        boxes, labels = boxes[keep], labels[keep]
    h, w = size
    xyxy = boxes / boxes.new_tensor([w, h, w, h])
    cxcywh = torch.cat([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], dim=1)
    return {"class_labels": labels - 1, "boxes": cxcywh}
