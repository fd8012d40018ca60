"""Semantic segmentation models: ``semantic_segmentation`` (backbone + head (+ aux head)).

``SegmentationModel`` holds what every dense-prediction model shares (``unet`` reuses it):

- train mode: each (image, ``semantic_mask``) pair is randomly cropped to ``crop_size`` with
  ``transforms.v2.RandomCrop`` (padding images with 0 and masks with the loss's ignore label
  when they are smaller), so labels are never interpolated; the loss is a registered
  ``loss`` component (``cross_entropy`` by default).
- eval mode: images are padded bottom/right to the batch's largest size; when that exceeds
  ``tile_size`` (default: ``crop_size``) the logits come from overlapping tiles of that size
  averaged where they overlap (``tiling.sliding_window``), else from one forward pass.

Images are normalised by the data pipeline (segmentation specs put ``Normalize`` there).
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2

from anchorage.core import component
from anchorage.core.build import build_child  # re-exported: older imports use this path
from anchorage.core.errors import DataError, SpecError
from anchorage.core.registry import MODELS

from .tiling import sliding_window


def _positive_pair(_inst: object, attribute: Any, value: tuple[int, int] | None) -> None:
    if value is not None and min(value) <= 0:
        raise ValueError(f"{attribute.name} must be two positive integers (H, W), got {value}")


@attrs.frozen(kw_only=True)
class SegmentationOptions:
    """Options every segmentation model shares (classes, loss, cropping, tiling)."""

    num_classes: int = attrs.field(validator=attrs.validators.gt(0))
    loss: Any = component("loss", optional=True)
    crop_size: tuple[int, int] | None = attrs.field(default=None, validator=_positive_pair)
    tile_size: tuple[int, int] | None = attrs.field(default=None, validator=_positive_pair)
    tile_overlap: float = attrs.field(
        default=1 / 3, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)]
    )
    tiles_per_batch: int = attrs.field(default=4, validator=attrs.validators.gt(0))


class SegmentationModel(nn.Module):
    """Dense-prediction I/O shared by segmentation models (see the module docstring).

    ``forward(images, targets=None)``: ``images`` list of B float ``[3, H_i, W_i]``.
    Train mode: ``targets[i]["semantic_mask"]`` int64 ``[H_i, W_i]`` (0 background, 1..C,
    ignore label); returns ``{"loss_seg": scalar}`` (+ ``loss_aux``). Eval mode: returns
    ``{"out": [B, C+1, H, W]}`` logits, H, W the largest image size of the batch; image i's
    pixels are ``out[i, :, :H_i, :W_i]``. Subclasses implement ``predict``.
    """

    def __init__(self, cfg: SegmentationOptions) -> None:
        super().__init__()
        self.cfg = cfg
        self.loss = build_child("loss", cfg.loss or {"type": "cross_entropy"})
        self.ignore_index = int(getattr(getattr(self.loss, "cfg", None), "ignore_index", 255))
        self.aux_weight = 0.0

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x`` float ``[B,3,H,W]`` → ``{"out": [B,C+1,H,W]}`` (+ ``"aux"`` in train mode)."""
        raise NotImplementedError

    def forward(
        self, images: list[torch.Tensor], targets: list[dict] | None = None
    ) -> dict[str, torch.Tensor]:
        if self.training:
            if targets is None:
                raise DataError("a segmentation model in train mode needs targets")
            x, masks = self.crop_batch(images, targets)
            return self.compute_loss(self.predict(x), masks)
        x = _pad_stack([_plain(im) for im in images], 0)
        return {"out": self.infer(x)}

    def crop_batch(
        self, images: list[torch.Tensor], targets: list[dict]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random ``crop_size`` crops of images and masks → ``[B,3,h,w]``, ``[B,h,w]`` int64."""
        masks = []
        for i, t in enumerate(targets):
            if "semantic_mask" not in t:
                raise DataError(
                    f"target {i} has no 'semantic_mask' (keys {sorted(t)}); ask the dataset "
                    "for semantic masks"
                )
            masks.append(_plain(t["semantic_mask"]).to(torch.int64))
        if self.cfg.crop_size is None:
            return _pad_stack([_plain(im) for im in images], 0), _pad_stack(
                masks, self.ignore_index
            )
        crop = v2.RandomCrop(
            self.cfg.crop_size,
            pad_if_needed=True,
            fill={tv_tensors.Image: 0, tv_tensors.Mask: self.ignore_index},
        )
        pairs = [crop(tv_tensors.Image(im), tv_tensors.Mask(m)) for im, m in zip(images, masks)]
        x = torch.stack([_plain(p[0]) for p in pairs])
        return x, torch.stack([_plain(p[1]) for p in pairs])

    def compute_loss(
        self, outputs: dict[str, torch.Tensor], masks: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Loss terms of the main (and auxiliary) logits against ``masks`` ``[B,H,W]``."""
        losses = dict(self.loss(outputs["out"], masks))
        if "aux" in outputs and self.aux_weight > 0:
            (aux,) = self.loss(outputs["aux"], masks).values()
            losses["loss_aux"] = self.aux_weight * aux
        return losses

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """Eval logits ``[B,C+1,H,W]`` for ``x`` ``[B,3,H,W]``, tiled above the tile size."""
        crop = self.cfg.tile_size or self.cfg.crop_size
        if crop is None or (x.shape[-2] <= crop[0] and x.shape[-1] <= crop[1]):
            return self.predict(x)["out"]
        keep = 1.0 - self.cfg.tile_overlap
        stride = (max(1, math.floor(crop[0] * keep)), max(1, math.floor(crop[1] * keep)))
        return sliding_window(
            lambda t: self.predict(t)["out"],
            x,
            crop,
            stride,
            tiles_per_batch=self.cfg.tiles_per_batch,
        )


def _plain(t: torch.Tensor) -> torch.Tensor:
    return t.as_subclass(torch.Tensor)


def _pad_stack(items: list[torch.Tensor], value: float) -> torch.Tensor:
    """Stack ``[..., H_i, W_i]`` tensors, padding bottom/right with ``value`` to the largest."""
    h = max(t.shape[-2] for t in items)
    w = max(t.shape[-1] for t in items)
    return torch.stack(
        [F.pad(t, (0, w - t.shape[-1], 0, h - t.shape[-2]), value=value) for t in items]
    )


_BACKBONE_EXAMPLE = {"type": "resnet18", "norm": "bn", "return_layers": ("layer3", "layer4")}


@MODELS.register(
    "semantic_segmentation",
    examples=(
        {"num_classes": 2, "backbone": _BACKBONE_EXAMPLE, "head": {"type": "fcn_head"}},
        {
            "num_classes": 2,
            "backbone": _BACKBONE_EXAMPLE,
            "head": {"type": "tv_fcn_head"},
            "aux_head": {"type": "tv_fcn_head"},
            "crop_size": (64, 64),
        },
    ),
)
class SemanticSegmentation(SegmentationModel):
    """Backbone + segmentation head (+ auxiliary head on an earlier feature, training only).

    ``feature`` names the backbone output the head reads (default: the coarsest);
    ``aux_feature`` the one the auxiliary head reads (default: the one before it); the heads
    get ``in_channels``, ``stride`` and ``num_classes`` from the backbone's ``feature_info``.
    """

    @attrs.frozen(kw_only=True)
    class Config(SegmentationOptions):
        backbone: Any = component("backbone")
        head: Any = component("head")
        aux_head: Any = component("head", optional=True)
        feature: str | None = None
        aux_feature: str | None = None
        aux_weight: float = attrs.field(default=0.5, validator=attrs.validators.ge(0.0))

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.backbone = build_child("backbone", cfg.backbone)
        info = {f.name: f for f in self.backbone.feature_info}
        names = list(info)
        feature = _pick(cfg.feature, names, -1, "feature")
        self.head = build_child("head", cfg.head, **_head_inputs(info[feature], cfg.num_classes))
        self.aux_head = None
        if cfg.aux_head is not None:
            aux = _pick(cfg.aux_feature, names, -2, "aux_feature")
            self.aux_head = build_child(
                "head", cfg.aux_head, **_head_inputs(info[aux], cfg.num_classes)
            )
            self.aux_weight = cfg.aux_weight

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = (x.shape[-2], x.shape[-1])
        features = self.backbone(x)
        out = {"out": self.head(features, size)["logits"]}
        if self.aux_head is not None and self.training:
            out["aux"] = self.aux_head(features, size)["logits"]
        return out


def _pick(name: str | None, names: list[str], default: int, key: str) -> str:
    if name is None:
        if len(names) < -default:
            raise SpecError(
                f"model.{key}: the backbone has features {names}; cannot pick a default"
            )
        return names[default]
    if name not in names:
        raise SpecError(
            f"model.{key}: expected one of the backbone's features {names}, got {name!r}"
        )
    return name


def _head_inputs(feature: Any, num_classes: int) -> dict[str, Any]:
    return {
        "in_channels": feature.channels,
        "stride": feature.stride,
        "in_feature": feature.name,
        "num_classes": num_classes,
    }
