"""Image preprocessing inside detection models: normalize, resize, batch, and map back.

``ImagePreprocessor`` has torchvision ``GeneralizedRCNNTransform`` semantics — it *is* that
transform (wrapped, so the arithmetic is torchvision's bit for bit) with anchorage's input
checks and a declared config that model specs embed as ``preprocess: {...}``:

- SSD: ``fixed_size: [300, 300]``, ``size_divisible: 1`` (every image resized to 300×300).
- R-CNN: ``min_size: [800]``, ``max_size: 1333``, ``size_divisible: 32`` (aspect kept; in train
  mode one of several ``min_size`` values is drawn per image for multi-scale training).
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from anchorage.core.errors import DataError


def _positive(_inst: object, attr: attrs.Attribute, value: Any) -> None:
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if value is not None and (not values or any(v <= 0 for v in values)):
        raise ValueError(f"{attr.name} must be > 0 (and non-empty), got {value}")


@attrs.frozen(kw_only=True)
class PreprocessConfig:
    """How a detection model turns input images into its batch tensor.

    ``mean``/``std``: per-channel normalization of 0..1 images. ``fixed_size``: ``(H, W)``
    every image is resized to (aspect not kept); when null, images are scaled so the short
    side is ``min_size`` (one drawn at random per image in train mode) unless the long side
    would exceed ``max_size``. ``size_divisible``: the batch is zero-padded (bottom/right) to
    multiples of it. ``keep_train_size``: in train mode images keep the size they come with
    (the data pipeline chose it, e.g. ``multi_scale``); eval mode still resizes.
    """

    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = attrs.field(
        default=(0.229, 0.224, 0.225), validator=_positive
    )
    fixed_size: tuple[int, int] | None = attrs.field(default=None, validator=_positive)
    min_size: tuple[int, ...] = attrs.field(default=(800,), validator=_positive)
    max_size: int = attrs.field(default=1333, validator=_positive)
    size_divisible: int = attrs.field(default=32, validator=_positive)
    keep_train_size: bool = False


@attrs.frozen
class PreprocessedBatch:
    """Output of ``ImagePreprocessor``.

    ``images``: float ``[B,3,H,W]`` normalized, resized, zero-padded. ``image_sizes``: ``(h, w)``
    of each image inside the batch before padding. ``original_sizes``: ``(H, W)`` as given.
    ``targets``: shallow copies of the input targets with ``boxes`` (and ``masks``) resized,
    or None.
    """

    images: torch.Tensor
    image_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]
    targets: list[dict[str, Any]] | None


class ImagePreprocessor(nn.Module):
    """Normalize → resize (images, boxes, masks) → pad into a batch; and the way back.

    ``forward(images, targets=None)``: ``images`` a non-empty list of float ``[3,H,W]`` tensors
    in 0..1 (sizes may differ); ``targets`` optional dicts with ``boxes [N,4]`` xyxy pixels
    (``masks [N,H,W]`` uint8 resized too). Returns a ``PreprocessedBatch``. ``postprocess``
    maps result ``boxes`` (and ``masks [K,1,h,w]`` pasted into the image) back to the original
    sizes. Holds no parameters or buffers (no state-dict entries).
    """

    def __init__(self, cfg: PreprocessConfig) -> None:
        super().__init__()
        self.cfg = cfg
        fixed = None if cfg.fixed_size is None else (cfg.fixed_size[1], cfg.fixed_size[0])
        # torchvision's fixed_size is (W, H); ours is (H, W) like every other size here.
        min_size = min(cfg.fixed_size) if fixed else cfg.min_size
        max_size = max(cfg.fixed_size) if fixed else cfg.max_size
        self.transform = GeneralizedRCNNTransform(
            min_size,
            max_size,
            list(cfg.mean),
            list(cfg.std),
            size_divisible=cfg.size_divisible,
            fixed_size=fixed,
        )

    def forward(
        self, images: list[torch.Tensor], targets: list[dict[str, Any]] | None = None
    ) -> PreprocessedBatch:
        _check_inputs(images, targets)
        original = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        if self.training and self.cfg.keep_train_size:
            return self._as_given(images, targets, original)
        image_list, targets = self.transform(list(images), targets)
        sizes = [(int(h), int(w)) for h, w in image_list.image_sizes]
        return PreprocessedBatch(image_list.tensors, sizes, original, targets)

    def _as_given(
        self,
        images: list[torch.Tensor],
        targets: list[dict[str, Any]] | None,
        original: list[tuple[int, int]],
    ) -> PreprocessedBatch:
        """Normalize and pad without resizing (``keep_train_size`` in train mode)."""
        normalized = [self.transform.normalize(im) for im in images]
        batch = self.transform.batch_images(normalized, size_divisible=self.cfg.size_divisible)
        copies = None if targets is None else [dict(t) for t in targets]
        return PreprocessedBatch(batch, list(original), original, copies)

    def postprocess(
        self,
        results: list[dict[str, torch.Tensor]],
        image_sizes: list[tuple[int, int]],
        original_sizes: list[tuple[int, int]],
    ) -> list[dict[str, torch.Tensor]]:
        """Rescale each result's ``boxes`` (and paste ``masks``) from batch to original pixels."""
        was_training = self.transform.training
        self.transform.eval()  # torchvision skips postprocessing in train mode
        try:
            return self.transform.postprocess(results, image_sizes, original_sizes)
        finally:
            self.transform.train(was_training)

    def export_batch(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Eval-mode ``forward`` for an exported graph: ``images`` float ``[B,3,H,W]`` in 0..1
        (one size for the batch) → (normalized, resized, zero-padded ``[B,3,H',W']``, the
        resized ``(h, w)`` inside it). The arithmetic of ``GeneralizedRCNNTransform`` image by
        image; with ``fixed_size`` H and W may be symbolic (the output size is not)."""
        t = self.transform
        mean = torch.as_tensor(t.image_mean, dtype=images.dtype, device=images.device)
        std = torch.as_tensor(t.image_std, dtype=images.dtype, device=images.device)
        x = (images - mean[:, None, None]) / std[:, None, None]
        size = self.resized_size(images.shape[-2], images.shape[-1])
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        d = self.cfg.size_divisible
        pad_h, pad_w = math.ceil(size[0] / d) * d - size[0], math.ceil(size[1] / d) * d - size[1]
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return x, size

    def resized_size(self, h: int, w: int) -> tuple[int, int]:
        """The eval-mode ``(h, w)`` an ``h`` x ``w`` image is resized to (torchvision's rule:
        the fixed size, else the short side to ``min_size[-1]`` unless the long side would
        pass ``max_size``, the scale in python floats as in torchvision's eager mode)."""
        if self.cfg.fixed_size is not None:
            return tuple(self.cfg.fixed_size)
        # python floats, as torchvision's eager resize (its float32 tensors are for scripting
        # and tracing): 100 x 90 to min_size 128 is 128 x 115 here, 127 x 115 in float32
        scale = min(self.transform.min_size[-1] / min(h, w), self.transform.max_size / max(h, w))
        return math.floor(h * scale), math.floor(w * scale)

    def export_rescale(
        self, boxes: torch.Tensor, resized: tuple[int, int], original: tuple[Any, Any]
    ) -> torch.Tensor:
        """xyxy ``boxes [...,4]`` from resized to ``original`` pixels (``postprocess``'s float32
        ratios; ``original`` may be symbolic sizes)."""
        one = torch.ones((), dtype=torch.float32, device=boxes.device)
        rh = (one * original[0]) / torch.full_like(one, float(resized[0]))
        rw = (one * original[1]) / torch.full_like(one, float(resized[1]))
        return boxes * torch.stack([rw, rh, rw, rh])

    def export_info(self) -> dict[str, Any]:
        """What a consumer of an exported graph needs to know about the input pipeline."""
        cfg = self.cfg
        info: dict[str, Any] = {"mean": list(cfg.mean), "std": list(cfg.std)}
        if cfg.fixed_size is not None:
            info["resize"] = {"fixed_size": list(cfg.fixed_size)}
        else:
            info["resize"] = {"min_size": cfg.min_size[-1], "max_size": cfg.max_size}
        info["size_divisible"] = cfg.size_divisible
        return info

    def detection_export_info(self, num_classes: int) -> dict[str, Any]:
        """A detector's ``export_info`` (``anchorage.core.deploy``): task, classes, whether H x
        W stay fixed and why, and this input pipeline (``export_info``)."""
        return {
            "task": "detection",
            "num_classes": num_classes,
            "fixed_size_reason": self.fixed_size_reason(),
            **self.export_info(),
        }

    def fixed_size_reason(self) -> str | None:
        """Why an exported graph needs a fixed input H x W (None: any size is fine)."""
        if self.cfg.fixed_size is not None:
            return None
        return (
            "the aspect-keeping resize (min_size/max_size) computes its output size from the "
            "image size, so height and width are fixed at export"
        )


def _check_inputs(images: list[torch.Tensor], targets: list[dict[str, Any]] | None) -> None:
    if isinstance(images, torch.Tensor) or not images:
        raise DataError(
            "a detection model takes a non-empty list of [3,H,W] image tensors, got "
            + (
                f"a tensor of shape {tuple(images.shape)}"
                if isinstance(images, torch.Tensor)
                else "[]"
            )
        )
    for i, im in enumerate(images):
        if not isinstance(im, torch.Tensor) or im.dim() != 3 or im.shape[0] != 3:
            got = tuple(im.shape) if isinstance(im, torch.Tensor) else type(im).__name__
            raise DataError(f"images[{i}]: expected a [3,H,W] tensor, got {got}")
        if not im.is_floating_point():
            raise DataError(f"images[{i}]: expected a float image in 0..1, got dtype {im.dtype}")
    if targets is None:
        return
    if len(targets) != len(images):
        raise DataError(f"got {len(images)} images but {len(targets)} targets")
    for i, t in enumerate(targets):
        boxes = t.get("boxes") if isinstance(t, dict) else None
        if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or boxes.shape[-1] != 4:
            got = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
            raise DataError(f"targets[{i}]['boxes']: expected a float [N,4] tensor, got {got}")
