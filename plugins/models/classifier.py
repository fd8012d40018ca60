"""Image classification (``classifier``) and single-object localization (``localizer``).

``classifier``: backbone → one feature map (``feature``, default the coarsest) → a
``classification_head`` (``linear_head``: global average pooling + linear) → a
``classification_loss`` (``classification_ce``, label smoothing). ``localizer`` adds a
``box_regression_head`` and a ``localization_loss`` (``box_l1_giou``): the notes' classifier
with a box-regression output, one object per image.

I/O follows every anchorage model: images ``list[Tensor[3,H_i,W_i]]`` float 0..1, normalised
inside the model (``mean``/``std``). With ``image_size`` (H, W) every image is resized to it
(bilinear, antialiased) inside the model; without it, images of one size form one batch
(crops and resizes belong to the data pipeline) and a batch mixing sizes runs one forward per
size.

Classifier targets: ``{"label": int64 scalar in 1..C}`` (``image_folder``'s). Outputs in eval
mode, one dict per image, shaped as detections without boxes (labels 1..C, best first):

- ``labels`` int64 ``[k]``: the top-k classes, ``k = min(topk, C)``; ``labels[0]`` is top-1;
- ``scores`` float ``[k]``: their softmax probabilities, descending;
- ``probs`` float ``[C]``: every class's probability (label ``c`` at index ``c - 1``).

Localizer targets: detection targets with one object, ``boxes [N,4]`` xyxy pixels and
``labels [N]`` (the first is used; an image with none adds nothing to the loss). Its outputs
are detections with K = 1 (``boxes [1,4]`` xyxy original pixels, ``scores [1]``, ``labels
[1]``) plus ``probs [C]``, so detection metrics, drawing and export read them unchanged.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert

from anchorage.core import component
from anchorage.core.build import build_child
from anchorage.core.composition import CompositionError, node_path
from anchorage.core.errors import DataError
from anchorage.core.registry import MODELS
from anchorage.core.slots import Slot, check_loss_terms


def _size_pair(_inst: object, attribute: Any, value: tuple[int, int] | None) -> None:
    if value is not None and (len(value) != 2 or min(value) <= 0):
        raise ValueError(f"{attribute.name} must be two positive integers (H, W), got {value}")


_LENET = {"type": "lenet"}
_R18 = {"type": "resnet18", "norm": "bn", "return_layers": ("layer4",)}


@MODELS.register(
    "classifier",
    examples=(
        {"num_classes": 3, "backbone": _LENET},
        {"num_classes": 2, "backbone": _R18, "image_size": (32, 32), "topk": 1},
    ),
)
class Classifier(nn.Module):
    """Backbone + classification head + loss (see the module docstring for I/O)."""

    @attrs.frozen(kw_only=True)
    class Config:
        num_classes: int = attrs.field(validator=attrs.validators.gt(0))
        backbone: Any = component("backbone")
        head: Any = component(
            "head", role="classification_head", factory=lambda: {"type": "linear_head"}
        )
        loss: Any = component(
            "loss", role="classification_loss", factory=lambda: {"type": "classification_ce"}
        )
        feature: str | None = None
        image_size: tuple[int, int] | None = attrs.field(default=None, validator=_size_pair)
        topk: int = attrs.field(default=5, validator=attrs.validators.ge(1))
        mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
        std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        self.backbone = build_child("backbone", cfg.backbone)
        info = {f.name: f for f in self.backbone.feature_info}
        self.feature = _pick_feature(cfg.feature, list(info), cfg.backbone)
        self.in_channels = info[self.feature].channels
        self.head = build_child(
            "head", cfg.head, in_channels=self.in_channels, num_classes=cfg.num_classes
        )
        self.loss = build_child("loss", cfg.loss)
        self.loss_slot = Slot.of("loss", cfg.loss, "model.loss")
        self.head_slot = Slot.of("head", cfg.head, "model.head")
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------ stages
    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised ``x [B,3,H,W]`` → the heads' outputs (``logits [B,C]``)."""
        out = self.head(self.backbone(x)[self.feature])
        logits = out.get("logits") if isinstance(out, dict) else None
        if not isinstance(logits, torch.Tensor) or logits.shape != (x.shape[0], self.num_classes):
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else out
            self.head_slot.fail(
                f"returned logits {got}, expected [{x.shape[0]},{self.num_classes}] (B, C)"
            )
        return dict(out)

    def run(self, images: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``predict`` over a list of images: resized to ``image_size``, else one forward per
        distinct size; outputs ``[B,...]`` in the order of ``images``."""
        if not images:
            raise DataError("a classifier needs at least one image")
        size = self.cfg.image_size
        if size is not None:
            x = torch.cat([self._resized(im, size) for im in images])
            return self.predict(self._normalise(x))
        sizes = [tuple(im.shape[-2:]) for im in images]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, s in enumerate(sizes):
            groups.setdefault(s, []).append(i)
        if len(groups) == 1:
            return self.predict(self._normalise(torch.stack(images)))
        parts = [
            self.predict(self._normalise(torch.stack([images[i] for i in g])))
            for g in groups.values()
        ]
        order = torch.tensor([i for g in groups.values() for i in g], device=images[0].device)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order), device=order.device)
        return {k: torch.cat([p[k] for p in parts])[inverse] for k in parts[0]}

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    @staticmethod
    def _resized(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = image[None].float()
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        return F.interpolate(x, size=tuple(size), mode="bilinear", antialias=True)

    # ------------------------------------------------------------------ forward
    def forward(
        self, images: list[torch.Tensor], targets: list[dict] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        out = self.run(images)
        if self.training:
            if targets is None:
                raise DataError(f"a {type(self).__name__.lower()} in train mode needs targets")
            return self.compute_loss(out, targets, images)
        return self.results(out, images)

    def compute_loss(
        self, out: dict[str, torch.Tensor], targets: list[dict], images: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """The loss terms of ``out`` against the targets' ``label``."""
        labels = stack_labels(targets, out["logits"].device)
        return check_loss_terms(self.loss_slot, self.loss(out["logits"], labels))

    def results(
        self, out: dict[str, torch.Tensor], images: list[torch.Tensor]
    ) -> list[dict[str, torch.Tensor]]:
        """Per-image ``labels [k]``, ``scores [k]`` (top-k, best first) and ``probs [C]``."""
        probs = out["logits"].float().softmax(-1)
        scores, index = probs.topk(min(self.cfg.topk, self.num_classes), dim=-1)
        labels = index + 1
        return [
            {"labels": lb, "scores": sc, "probs": p} for lb, sc, p in zip(labels, scores, probs)
        ]

    # ------------------------------------------------------------------ export
    def export_forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eval mode for an exported graph (``anchorage.core.deploy``): ``images`` float
        ``[B,3,H,W]`` in 0..1 → ``CLASSIFICATION_OUTPUTS``: ``probs [B,C]`` float32 softmax
        probabilities (label ``c`` at index ``c - 1``); the runtime takes the top-k of them as
        ``results`` does. With ``image_size`` the batch is resized to it inside the graph."""
        return {"probs": self.export_logits(images)["logits"].float().softmax(-1)}

    def export_logits(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``predict`` on a batch ``[B,3,H,W]`` in 0..1 (resized to ``image_size`` if set:
        always, where eager mode skips an image of that size, which it leaves unchanged)."""
        x = images.float()
        if self.cfg.image_size is not None:
            x = F.interpolate(x, size=tuple(self.cfg.image_size), mode="bilinear", antialias=True)
        return self.predict(self._normalise(x))

    def export_info(self) -> dict[str, Any]:
        """The exported graph's input pipeline and output kind (``anchorage.core.deploy``):
        any input size (the heads pool globally) from ``min_side`` on, ``topk`` the k of
        ``results``. ``min_side`` is the backbone's largest stride + 1 (without ``image_size``):
        torch.export traces one graph for maps of 2 pixels and more, not for a 1-pixel one."""
        size = self.cfg.image_size
        stride = max(f.stride for f in self.backbone.feature_info)
        return {
            "task": "classification",
            "num_classes": self.num_classes,
            "topk": min(self.cfg.topk, self.num_classes),
            "fixed_size_reason": None,
            "min_side": None if size is not None else stride + 1,
            "mean": list(self.cfg.mean),
            "std": list(self.cfg.std),
            "resize": None if size is None else {"fixed_size": list(size)},
        }


def stack_labels(targets: list[dict], device: torch.device) -> torch.Tensor:
    """``label`` of every target (an int64 scalar, 1..C) → ``[B]`` int64 on ``device``."""
    labels = []
    for i, t in enumerate(targets):
        label = t.get("label")
        if not isinstance(label, torch.Tensor) or label.numel() != 1:
            raise DataError(
                f"target {i} has no 'label' scalar (keys {sorted(t)}); a classifier trains on "
                "image-level labels, e.g. from the image_folder dataset"
            )
        labels.append(label.reshape(()))
    return torch.stack(labels).to(device, torch.int64)


def _pick_feature(name: str | None, names: list[str], backbone: Any) -> str:
    backbone_path = node_path(backbone, "model.backbone")
    key = f"{backbone_path.rpartition('.')[0] or 'model'}.feature"
    if name is None:
        return names[-1]
    if name not in names:
        raise CompositionError(
            f"{key}: {name!r} is not a feature of {backbone_path} ({', '.join(names)})",
            key,
            backbone_path,
        )
    return name


@MODELS.register(
    "localizer",
    examples=(
        {"num_classes": 3, "backbone": _LENET},
        {"num_classes": 2, "backbone": _R18, "image_size": (32, 32)},
    ),
)
class Localizer(Classifier):
    """A classifier with a box-regression output: one box per image (see the module docstring)."""

    @attrs.frozen(kw_only=True)
    class Config(Classifier.Config):
        box_head: Any = component(
            "head", role="box_regression_head", factory=lambda: {"type": "box_regression_head"}
        )
        box_loss: Any = component(
            "loss", role="localization_loss", factory=lambda: {"type": "box_l1_giou"}
        )

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.box_head = build_child("head", cfg.box_head, in_channels=self.in_channels)
        self.box_loss = build_child("loss", cfg.box_loss)
        self.box_loss_slot = Slot.of("loss", cfg.box_loss, "model.box_loss")
        self.box_head_slot = Slot.of("head", cfg.box_head, "model.box_head")

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised ``x [B,3,H,W]`` → ``logits [B,C]`` and ``boxes [B,4]`` cxcywh 0..1."""
        feature = self.backbone(x)[self.feature]
        out = dict(self.head(feature))
        boxes = self.box_head(feature).get("boxes")
        if not isinstance(boxes, torch.Tensor) or boxes.shape != (x.shape[0], 4):
            got = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else boxes
            self.box_head_slot.fail(f"returned boxes {got}, expected [{x.shape[0]},4] cxcywh")
        out["boxes"] = boxes
        return out

    def compute_loss(
        self, out: dict[str, torch.Tensor], targets: list[dict], images: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Classification of each image's first object and its box, normalised to 0..1."""
        device = out["logits"].device
        labels, boxes, valid = first_objects(targets, images, device)
        losses = check_loss_terms(self.loss_slot, self.loss(out["logits"], labels))
        box_terms = check_loss_terms(self.box_loss_slot, self.box_loss(out["boxes"], boxes, valid))
        return {**losses, **box_terms}

    def results(
        self, out: dict[str, torch.Tensor], images: list[torch.Tensor]
    ) -> list[dict[str, torch.Tensor]]:
        """One detection per image: the top-1 class, its probability and the box in pixels."""
        probs = out["logits"].float().softmax(-1)
        score, index = probs.max(-1)
        wh = _image_wh(images, probs.device)  # [B,2]
        boxes = box_convert(out["boxes"].float(), "cxcywh", "xyxy").clamp(0, 1) * wh.repeat(1, 2)
        return [
            {"boxes": b[None], "scores": s[None], "labels": i[None] + 1, "probs": p}
            for b, s, i, p in zip(boxes, score, index, probs)
        ]

    def export_forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eval mode for an exported graph: ``images`` float ``[B,3,H,W]`` in 0..1 →
        ``LOCALIZATION_OUTPUTS``: ``probs [B,C]`` (as the classifier's) and ``boxes [B,4]``
        float32 xyxy in input pixels, clamped to the image (``results``' box)."""
        out = self.export_logits(images)
        one = torch.ones((), dtype=torch.float32, device=images.device)
        w, h = one * images.shape[-1], one * images.shape[-2]
        boxes = box_convert(out["boxes"].float(), "cxcywh", "xyxy").clamp(0, 1)
        return {
            "probs": out["logits"].float().softmax(-1),
            "boxes": boxes * torch.stack([w, h, w, h]),
        }

    def export_info(self) -> dict[str, Any]:
        """The classifier's, with height and width fixed where the box head pools to a grid
        from a map whose size follows the input's (no ``image_size``): the ONNX exporter turns
        adaptive pooling into an ``AveragePool`` whose kernel is the traced map's size."""
        info = super().export_info()
        if self.cfg.image_size is None and getattr(self.box_head, "grid", None) is not None:
            info["fixed_size_reason"] = (
                "the box head's adaptive grid pooling exports with the kernel of the traced "
                "feature map (ONNX AveragePool), so height and width are fixed at export; set "
                "model.image_size to resize inside the graph and free them"
            )
        return info


def _image_wh(images: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    return torch.tensor(
        [[im.shape[-1], im.shape[-2]] for im in images], dtype=torch.float32, device=device
    )


def first_objects(
    targets: list[dict], images: list[torch.Tensor], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each image's first object: ``labels [B]`` (0 when none), ``boxes [B,4]`` xyxy in 0..1
    of the image, ``valid [B]`` bool (the image has an object)."""
    labels, boxes = [], []
    for i, t in enumerate(targets):
        if "boxes" not in t or "labels" not in t:
            raise DataError(
                f"target {i} has no 'boxes'/'labels' (keys {sorted(t)}); a localizer trains on "
                "detection targets with one object per image"
            )
        b = t["boxes"].reshape(-1, 4)[:1].float()
        lb = t["labels"].reshape(-1)[:1].long()
        labels.append(F.pad(lb, (0, 1 - lb.numel())))
        boxes.append(F.pad(b, (0, 0, 0, 1 - b.shape[0])))
    wh = _image_wh(images, device)
    labels_t = torch.cat(labels).to(device)
    boxes_t = torch.cat(boxes).to(device) / wh.repeat(1, 2)
    return labels_t, boxes_t, labels_t > 0
