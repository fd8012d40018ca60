"""Semantic segmentation loss (``cross_entropy``): per-pixel cross-entropy with an ignore label.

Same numerics as ``torch.nn.functional.cross_entropy`` (which torchvision's segmentation
reference uses with ``ignore_index=255``): mean over the pixels that are not ignored.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F

from anchorage.core.interfaces import roles
from anchorage.core.registry import LOSSES


@LOSSES.register("cross_entropy", examples=({}, {"ignore_index": -1, "label_smoothing": 0.1}))
class SegmentationCrossEntropy(roles.SegmentationLoss):
    """Pixel-wise cross-entropy; pixels labelled ``ignore_index`` do not count.

    ``forward(logits, target)``: ``logits`` float ``[B, C+1, H, W]``, ``target`` int64
    ``[B, H, W]`` with values in 0..C or ``ignore_index``. Returns ``{"loss_seg": scalar}``
    (``weight`` × mean over non-ignored pixels; with ``class_weights`` [C+1] the weighted mean
    of ``F.cross_entropy(weight=...)``); 0 (with a gradient path) when every pixel is ignored,
    never NaN.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        ignore_index: int = 255
        weight: float = attrs.field(default=1.0, validator=attrs.validators.ge(0.0))
        label_smoothing: float = attrs.field(
            default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)]
        )
        name: str = "seg"
        class_weights: tuple[float, ...] | None = None

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        valid = target != cfg.ignore_index
        if not valid.any():  # F.cross_entropy's mean over zero pixels is NaN
            return {f"loss_{cfg.name}": logits.sum() * 0.0}
        weights = None
        if cfg.class_weights is not None:
            if len(cfg.class_weights) != logits.shape[1]:
                raise ValueError(
                    f"cross_entropy: class_weights has {len(cfg.class_weights)} values, the "
                    f"logits have {logits.shape[1]} classes"
                )
            weights = logits.new_tensor(cfg.class_weights)
        loss = F.cross_entropy(
            logits,
            target,
            weight=weights,
            ignore_index=cfg.ignore_index,
            label_smoothing=cfg.label_smoothing,
        )
        return {f"loss_{cfg.name}": cfg.weight * loss}
