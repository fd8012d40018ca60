"""Semantic segmentation models: ``semantic_segmentation`` (backbone + head (+ aux head)).

``SegmentationModel`` holds what every dense-prediction model shares (``unet`` reuses it). It
follows the contract of every anchorage model:

- images come as given by the data pipeline (float 0..1, plain tensors) and are normalised
  inside the model (``mean``/``std``), as detection models do;
- augmentation, random crops included, belongs to the data pipeline (the ``random_crop``
  transform crops image and ``semantic_mask`` together, so labels are never interpolated);
- train mode: images (and masks) are padded bottom/right to the batch's largest size (masks
  with the loss's ignore label); the loss is a registered ``loss`` component
  (``cross_entropy`` by default);
- eval mode: one dict per image, ``{"sem_seg": [C+1,H_i,W_i]}`` logits at the image's own
  size. The batch is padded to its largest size; above ``tile_size`` the logits come from
  overlapping tiles of that size averaged where they overlap (``tiling.sliding_window``),
  else from one forward pass.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from anchorage.core import component
from anchorage.core.build import build_child  # re-exported: older imports use this path
from anchorage.core.composition import CompositionError, node_path
from anchorage.core.errors import DataError
from anchorage.core.registry import MODELS
from anchorage.core.slots import Slot, check_loss_terms

from .tiling import sliding_window


def _positive_pair(_inst: object, attribute: Any, value: tuple[int, int] | None) -> None:
    if value is not None and min(value) <= 0:
        raise ValueError(f"{attribute.name} must be two positive integers (H, W), got {value}")


@attrs.frozen(kw_only=True)
class SegmentationOptions:
    """Options every segmentation model shares (classes, normalisation, loss, tiling).

    ``mean``/``std``: per-channel normalisation of 0..1 images, inside the model.
    ``tile_size``: eval images larger than this are predicted tile by tile (None: one pass).
    """

    num_classes: int = attrs.field(validator=attrs.validators.gt(0))
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    loss: Any = component("loss", optional=True, role="segmentation_loss")
    tile_size: tuple[int, int] | None = attrs.field(default=None, validator=_positive_pair)
    tile_overlap: float = attrs.field(
        default=1 / 3, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)]
    )
    tiles_per_batch: int = attrs.field(default=4, validator=attrs.validators.gt(0))


class SegmentationModel(nn.Module):
    """Dense-prediction I/O shared by segmentation models (see the module docstring).

    ``forward(images, targets=None)``: ``images`` list of B float ``[3, H_i, W_i]`` (0..1).
    Train mode: ``targets[i]["semantic_mask"]`` int64 ``[H_i, W_i]`` (0 background, 1..C,
    ignore label); returns ``{"loss_seg": scalar}`` (+ ``loss_aux``). Eval mode: returns one
    dict per image, ``{"sem_seg": [C+1, H_i, W_i]}`` logits. Subclasses implement ``predict``.
    """

    def __init__(self, cfg: SegmentationOptions) -> None:
        super().__init__()
        self.cfg = cfg
        self.loss = build_child("loss", cfg.loss or {"type": "cross_entropy"})
        self.loss_slot = Slot.of("loss", cfg.loss or {"type": "cross_entropy"}, "model.loss")
        self.ignore_index = int(getattr(getattr(self.loss, "cfg", None), "ignore_index", 255))
        self.aux_weight = 0.0
        self.register_buffer("mean", torch.tensor(cfg.mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(3, 1, 1), persistent=False)

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x`` float ``[B,3,H,W]`` → ``{"out": [B,C+1,H,W]}`` (+ ``"aux"`` in train mode)."""
        raise NotImplementedError

    def forward(
        self, images: list[torch.Tensor], targets: list[dict] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        # each image is normalised before padding, so padding is 0 in normalised space
        x = _pad_stack([(im - self.mean) / self.std for im in images], 0)
        if self.training:
            if targets is None:
                raise DataError("a segmentation model in train mode needs targets")
            return self.compute_loss(self.predict(x), self.stack_masks(targets))
        logits = self.infer(x)
        sizes = [im.shape[-2:] for im in images]
        return [{"sem_seg": lg[:, :h, :w]} for lg, (h, w) in zip(logits, sizes)]

    def export_forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eval mode for an exported graph (``anchorage.core.deploy``): ``images`` float
        ``[B,3,H,W]`` in 0..1 → ``{"sem_seg": [B,C+1,H,W]}`` logits."""
        mean, std = self.mean.to(images.dtype), self.std.to(images.dtype)
        return {"sem_seg": self.infer((images - mean) / std)}

    def export_info(self) -> dict[str, Any]:
        """The exported graph's input pipeline and output kind (``anchorage.core.deploy``)."""
        tiled = self.cfg.tile_size is not None
        return {
            "task": "semantic",
            "num_classes": self.cfg.num_classes,
            "mean": list(self.cfg.mean),
            "std": list(self.cfg.std),
            "resize": None,
            "fixed_size_reason": (
                "tiled inference (tile_size) chooses its tiles from the image size"
                if tiled
                else None
            ),
        }

    def stack_masks(self, targets: list[dict]) -> torch.Tensor:
        """``semantic_mask`` of every target, padded with the ignore label → ``[B,H,W]`` int64."""
        masks = []
        for i, t in enumerate(targets):
            if "semantic_mask" not in t:
                raise DataError(
                    f"target {i} has no 'semantic_mask' (keys {sorted(t)}); ask the dataset "
                    "for semantic masks"
                )
            masks.append(t["semantic_mask"].to(torch.int64))
        return _pad_stack(masks, self.ignore_index)

    def compute_loss(
        self, outputs: dict[str, torch.Tensor], masks: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Loss terms of the main (and auxiliary) logits against ``masks`` ``[B,H,W]``."""
        losses = check_loss_terms(self.loss_slot, self.loss(outputs["out"], masks))
        if "aux" in outputs and self.aux_weight > 0:
            (aux,) = self.loss(outputs["aux"], masks).values()
            losses["loss_aux"] = self.aux_weight * aux
        return losses

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """Eval logits ``[B,C+1,H,W]`` for ``x`` ``[B,3,H,W]``, tiled above the tile size."""
        tile = self.cfg.tile_size
        if tile is None or (x.shape[-2] <= tile[0] and x.shape[-1] <= tile[1]):
            return self.predict(x)["out"]
        keep = 1.0 - self.cfg.tile_overlap
        stride = (max(1, math.floor(tile[0] * keep)), max(1, math.floor(tile[1] * keep)))
        return sliding_window(
            lambda t: self.predict(t)["out"],
            x,
            tile,
            stride,
            tiles_per_batch=self.cfg.tiles_per_batch,
        )


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
            "tile_size": (64, 64),
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
        head: Any = component("head", role="segmentation_head")
        aux_head: Any = component("head", optional=True, role="segmentation_head")
        feature: str | None = None
        aux_feature: str | None = None
        aux_weight: float = attrs.field(default=0.5, validator=attrs.validators.ge(0.0))

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.backbone = build_child("backbone", cfg.backbone)
        info = {f.name: f for f in self.backbone.feature_info}
        names = list(info)
        model = node_path(cfg.backbone, "model.backbone").rpartition(".")[0] or "model"
        feature = _pick(cfg.feature, names, -1, f"{model}.feature")
        self.head = build_child("head", cfg.head, **_head_inputs(info[feature], cfg.num_classes))
        self.aux_head = None
        if cfg.aux_head is not None:
            aux = _pick(cfg.aux_feature, names, -2, f"{model}.aux_feature")
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
    """The feature a head reads: ``name`` (key path ``key``) or ``names[default]``."""
    backbone = f"{key.rpartition('.')[0]}.backbone"
    if name is None:
        if len(names) < -default:
            raise CompositionError(
                f"{key}: {backbone} has features ({', '.join(names)}); cannot pick a default, "
                "set it",
                key,
                backbone,
            )
        return names[default]
    if name not in names:
        raise CompositionError(
            f"{key}: {name!r} is not a feature of {backbone} ({', '.join(names)})", key, backbone
        )
    return name


def _head_inputs(feature: Any, num_classes: int) -> dict[str, Any]:
    return {
        "in_channels": feature.channels,
        "stride": feature.stride,
        "in_feature": feature.name,
        "num_classes": num_classes,
    }
