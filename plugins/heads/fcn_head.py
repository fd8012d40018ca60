"""Fully convolutional segmentation heads: ``fcn_head`` (classic FCN-32s) and ``tv_fcn_head``.

Both read one feature map (``in_feature``, injected by the model with its channels and stride
from the backbone's ``feature_info``) and return per-pixel class logits at the image size:

- ``fcn_head`` (Long et al.; d2l.ai ch. 14.11): 1×1 conv to C+1 class scores, then a
  ``ConvTranspose2d(k=2s, stride=s, padding=s/2)`` initialised with the bilinear
  interpolation kernel (s = the feature stride, e.g. k=64, s=32, p=16 on a ResNet-18 trunk);
  the output, ``s`` times the feature size, is cropped to the image.
- ``tv_fcn_head``: torchvision's ``FCNHead`` (3×3 conv to in/4 channels without bias,
  BatchNorm, ReLU, Dropout(0.1), 1×1 conv) followed by bilinear interpolation
  (``align_corners=False``) to the image size, as ``torchvision.models.segmentation.FCN``.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from anchorage.core import injected
from anchorage.core.interfaces import roles
from anchorage.core.registry import HEADS


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Weights ``[channels, channels, k, k]`` of a transposed conv doing bilinear upsampling.

    Channel i maps to channel i only (diagonal); the kernel is the outer product of the 1-D
    tent ``1 − |x − centre| / factor`` with ``factor = ceil(k / 2)`` (FCN's ``upsample_filt``).
    """
    factor = (kernel_size + 1) // 2
    centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    tent = 1 - (og - centre).abs() / factor
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    idx = torch.arange(channels)
    weight[idx, idx] = tent[:, None] * tent[None, :]
    return weight


def fit_to_size(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop ``[B,K,h,w]`` to ``size`` from the top-left (bilinear resize when smaller)."""
    h, w = size
    if logits.shape[-2] >= h and logits.shape[-1] >= w:
        return logits[..., :h, :w]
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


@attrs.frozen(kw_only=True)
class SegHeadInputs:
    """Fields every segmentation head receives from its model."""

    in_channels: int = injected()
    num_classes: int = injected()
    stride: int = injected(default=1)
    in_feature: str = injected(default="out")


@HEADS.register(
    "fcn_head",
    examples=(
        {"in_channels": 8, "num_classes": 2, "stride": 32, "in_feature": "c5"},
        {"in_channels": 8, "num_classes": 1, "stride": 1, "in_feature": "c5"},
    ),
)
class FCNHead(roles.SegmentationHead):
    """Classic FCN-32s head: 1×1 conv to C+1 scores, bilinear-initialised transposed conv.

    ``forward(features, image_size)``: ``features[in_feature]`` float ``[B, in_channels, h, w]``
    (stride ``s``); ``image_size`` ``(H, W)`` with ``H <= s·h``, ``W <= s·w``. Returns
    ``{"logits": [B, C+1, H, W]}`` (upsampled ``s·h × s·w``, then cropped top-left: output
    pixel y lies in feature cell ``y // s``).
    """

    @attrs.frozen(kw_only=True)
    class Config(SegHeadInputs):
        learn_upsampling: bool = True

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        k = cfg.num_classes + 1
        self.score = nn.Conv2d(cfg.in_channels, k, kernel_size=1)
        s = cfg.stride
        if s == 1:
            self.upsample: nn.Module = nn.Identity()
        else:
            self.upsample = nn.ConvTranspose2d(k, k, 2 * s, stride=s, padding=s // 2, bias=False)
            with torch.no_grad():
                self.upsample.weight.copy_(bilinear_kernel(k, 2 * s))
            self.upsample.weight.requires_grad_(cfg.learn_upsampling)

    def forward(
        self, features: dict[str, torch.Tensor], image_size: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        x = self.upsample(self.score(features[self.cfg.in_feature]))
        return {"logits": x if image_size is None else fit_to_size(x, image_size)}


@HEADS.register(
    "tv_fcn_head",
    examples=({"in_channels": 16, "num_classes": 2, "stride": 8, "in_feature": "c5"},),
)
class TVFCNHead(roles.SegmentationHead):
    """torchvision's ``FCNHead`` + bilinear upsampling to the image size.

    ``forward(features, image_size)``: ``features[in_feature]`` float ``[B, in_channels, h, w]``.
    Returns ``{"logits": [B, C+1, H, W]}`` (``F.interpolate(..., mode="bilinear",
    align_corners=False)``). Parameters ``layers.{0,1,4}.*`` are torchvision's ``{0,1,4}.*``.
    """

    @attrs.frozen(kw_only=True)
    class Config(SegHeadInputs):
        channels: int | None = attrs.field(
            default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
        )
        dropout: float = attrs.field(
            default=0.1, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)]
        )

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        inter = cfg.channels or cfg.in_channels // 4
        self.layers = nn.Sequential(
            nn.Conv2d(cfg.in_channels, inter, 3, padding=1, bias=False),
            nn.BatchNorm2d(inter),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Conv2d(inter, cfg.num_classes + 1, 1),
        )

    def forward(
        self, features: dict[str, torch.Tensor], image_size: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        x = self.layers(features[self.cfg.in_feature])
        if image_size is None:
            image_size = (x.shape[-2] * self.cfg.stride, x.shape[-1] * self.cfg.stride)
        return {"logits": F.interpolate(x, size=image_size, mode="bilinear", align_corners=False)}
