"""Registered wrappers over ``torchvision.transforms.v2``.

Each factory returns a v2 transform applied to ``(image, target)``: boxes
(``tv_tensors.BoundingBoxes``) and masks (``tv_tensors.Mask``) in the target follow the image
through every geometric op. After ops that can cut boxes (``random_resized_crop``,
``iou_crop``, ``zoom_out`` + crop) put ``sanitize_boxes`` last: it drops boxes that became
degenerate, together with their labels, iscrowd, area and instance masks.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from anchorage.core.data.transforms import sanitize_labels_getter
from anchorage.core.registry import TRANSFORMS

_ge0 = attrs.validators.ge(0.0)
_prob = [attrs.validators.ge(0.0), attrs.validators.le(1.0)]


@attrs.frozen(kw_only=True)
class FlipConfig:
    p: float = attrs.field(default=0.5, validator=_prob)


@TRANSFORMS.register("horizontal_flip", config=FlipConfig)
def horizontal_flip(cfg: FlipConfig) -> v2.Transform:
    """Flip left-right with probability ``p`` (v2.RandomHorizontalFlip)."""
    return v2.RandomHorizontalFlip(cfg.p)


@TRANSFORMS.register("vertical_flip", config=FlipConfig)
def vertical_flip(cfg: FlipConfig) -> v2.Transform:
    """Flip top-bottom with probability ``p`` (v2.RandomVerticalFlip)."""
    return v2.RandomVerticalFlip(cfg.p)


@attrs.frozen(kw_only=True)
class ResizedCropConfig:
    size: tuple[int, int]  # (H, W)
    scale: tuple[float, float] = (0.3, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    antialias: bool = True


@TRANSFORMS.register(
    "random_resized_crop", config=ResizedCropConfig, examples=({"size": (64, 64)},)
)
def random_resized_crop(cfg: ResizedCropConfig) -> v2.Transform:
    """Crop a random area/aspect part and resize it to ``size`` (v2.RandomResizedCrop)."""
    return v2.RandomResizedCrop(cfg.size, scale=cfg.scale, ratio=cfg.ratio, antialias=cfg.antialias)


class PaddedRandomCrop(v2.RandomCrop):
    """``v2.RandomCrop`` with ``pad_if_needed`` that pads a semantic mask (a 2-D
    ``tv_tensors.Mask`` ``[H,W]``) with ``ignore_index`` and instance masks ``[N,H,W]`` with 0,
    so padded pixels are never scored and never become an instance."""

    def __init__(
        self, size: tuple[int, int], image_fill: tuple[float, ...], ignore_index: int
    ) -> None:
        super().__init__(
            list(size), pad_if_needed=True, fill={tv_tensors.Image: list(image_fill), "others": 0}
        )
        self.ignore_index = ignore_index

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask) and inpt.ndim == 2 and params["needs_pad"]:
            inpt = self._call_kernel(
                v2.functional.pad, inpt, padding=params["padding"], fill=self.ignore_index
            )
            params = {**params, "needs_pad": False}
        return super().transform(inpt, params)


@attrs.frozen(kw_only=True)
class RandomCropConfig:
    size: tuple[int, int]  # (H, W)
    # the ImageNet mean: what in-model normalisation maps to 0, so padding is neutral
    fill: tuple[float, float, float] = (0.485, 0.456, 0.406)
    ignore_index: int = 255


@TRANSFORMS.register("random_crop", config=RandomCropConfig, examples=({"size": (32, 36)},))
def random_crop(cfg: RandomCropConfig) -> v2.Transform:
    """A random ``size`` crop of image, boxes and masks (v2.RandomCrop), padding smaller images
    bottom/right first: the image with ``fill``, ``semantic_mask`` with ``ignore_index``,
    instance masks with 0. Labels are cut, never resampled (segmentation training crops)."""
    return PaddedRandomCrop(cfg.size, cfg.fill, cfg.ignore_index)


@attrs.frozen(kw_only=True)
class ColorJitterConfig:
    brightness: float = attrs.field(default=0.2, validator=_ge0)
    contrast: float = attrs.field(default=0.2, validator=_ge0)
    saturation: float = attrs.field(default=0.2, validator=_ge0)
    hue: float = attrs.field(
        default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.le(0.5)]
    )


@TRANSFORMS.register("color_jitter", config=ColorJitterConfig)
def color_jitter(cfg: ColorJitterConfig) -> v2.Transform:
    """Random brightness/contrast/saturation/hue (v2.ColorJitter); geometry unchanged."""
    return v2.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)


@attrs.frozen(kw_only=True)
class PhotometricConfig:
    brightness: tuple[float, float] = (0.875, 1.125)
    contrast: tuple[float, float] = (0.5, 1.5)
    saturation: tuple[float, float] = (0.5, 1.5)
    hue: tuple[float, float] = (-0.05, 0.05)
    p: float = attrs.field(default=0.5, validator=_prob)


@TRANSFORMS.register("photometric_distort", config=PhotometricConfig)
def photometric_distort(cfg: PhotometricConfig) -> v2.Transform:
    """SSD's photometric distortion (v2.RandomPhotometricDistort), each op with prob. ``p``."""
    return v2.RandomPhotometricDistort(
        brightness=cfg.brightness,
        contrast=cfg.contrast,
        saturation=cfg.saturation,
        hue=cfg.hue,
        p=cfg.p,
    )


@attrs.frozen(kw_only=True)
class ZoomOutConfig:
    fill: float = 0.0  # image fill value (images are float 0..1)
    side_range: tuple[float, float] = (1.0, 4.0)
    p: float = attrs.field(default=0.5, validator=_prob)


@TRANSFORMS.register("zoom_out", config=ZoomOutConfig)
def zoom_out(cfg: ZoomOutConfig) -> v2.Transform:
    """SSD zoom-out: place the image on a larger canvas (v2.RandomZoomOut); masks fill 0."""
    fill = {tv_tensors.Image: cfg.fill, "others": 0}
    return v2.RandomZoomOut(fill=fill, side_range=cfg.side_range, p=cfg.p)


@attrs.frozen(kw_only=True)
class IoUCropConfig:
    min_scale: float = 0.3
    max_scale: float = 1.0
    min_aspect_ratio: float = 0.5
    max_aspect_ratio: float = 2.0
    sampler_options: tuple[float, ...] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 2.0)
    trials: int = attrs.field(default=40, validator=attrs.validators.ge(1))


@TRANSFORMS.register("iou_crop", config=IoUCropConfig)
def iou_crop(cfg: IoUCropConfig) -> v2.Transform:
    """SSD random IoU crop (v2.RandomIoUCrop); follow it with ``sanitize_boxes``."""
    return v2.RandomIoUCrop(
        min_scale=cfg.min_scale,
        max_scale=cfg.max_scale,
        min_aspect_ratio=cfg.min_aspect_ratio,
        max_aspect_ratio=cfg.max_aspect_ratio,
        sampler_options=list(cfg.sampler_options),
        trials=cfg.trials,
    )


@attrs.frozen(kw_only=True)
class ResizeConfig:
    size: tuple[int, ...]  # (H, W), or (S,) for the shorter side
    max_size: int | None = None
    antialias: bool = True


@TRANSFORMS.register("resize", config=ResizeConfig, examples=({"size": (32, 48)},))
def resize(cfg: ResizeConfig) -> v2.Transform:
    """Resize image, boxes and masks (v2.Resize; masks with nearest interpolation)."""
    size = list(cfg.size) if len(cfg.size) > 1 else cfg.size[0]
    return v2.Resize(size, max_size=cfg.max_size, antialias=cfg.antialias)


@attrs.frozen(kw_only=True)
class CenterCropConfig:
    size: tuple[int, int]  # (H, W)


@TRANSFORMS.register("center_crop", config=CenterCropConfig, examples=({"size": (32, 40)},))
def center_crop(cfg: CenterCropConfig) -> v2.Transform:
    """The central ``size`` crop (v2.CenterCrop; padded with 0 when the image is smaller):
    with ``resize`` to a short side first, the classification evaluation recipe (256 → 224)."""
    return v2.CenterCrop(list(cfg.size))


@attrs.frozen(kw_only=True)
class NormalizeConfig:
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@TRANSFORMS.register("normalize", config=NormalizeConfig)
def normalize(cfg: NormalizeConfig) -> v2.Transform:
    """(image - mean) / std on float images (v2.Normalize). anchorage's models normalise inside
    the model (their ``mean``/``std``); this is for models that expect normalised input."""
    return v2.Normalize(list(cfg.mean), list(cfg.std))


@attrs.frozen(kw_only=True)
class ToDtypeConfig:
    dtype: Literal["float32", "float16", "bfloat16", "uint8"] = "float32"
    scale: bool = True


@TRANSFORMS.register("to_dtype", config=ToDtypeConfig)
def to_dtype(cfg: ToDtypeConfig) -> v2.Transform:
    """Convert the image dtype (v2.ToDtype, scaling values when ``scale``); targets untouched."""
    return v2.ToDtype(
        {tv_tensors.Image: getattr(torch, cfg.dtype), "others": None}, scale=cfg.scale
    )


@attrs.frozen(kw_only=True)
class SanitizeConfig:
    min_size: float = attrs.field(default=1.0, validator=attrs.validators.ge(1.0))
    min_area: float = attrs.field(default=1.0, validator=attrs.validators.ge(1.0))


@TRANSFORMS.register("sanitize_boxes", config=SanitizeConfig)
@TRANSFORMS.register("sanitize", config=SanitizeConfig)
def sanitize_boxes(cfg: SanitizeConfig) -> v2.Transform:
    """Drop boxes smaller than ``min_size``/``min_area`` and their labels, iscrowd, area and
    masks (v2.SanitizeBoundingBoxes); put it after geometric ops."""
    return v2.SanitizeBoundingBoxes(
        min_size=cfg.min_size, min_area=cfg.min_area, labels_getter=sanitize_labels_getter
    )
