"""RoI extractors over torchvision.ops: ``roi_pool``, ``roi_align``, ``multiscale_roi_align``.

All take the features dict, a list of per-image boxes (xyxy, pixels of the batch tensor) and the
image sizes, and return ``[sum R_i, C, h, w]`` in the order of the concatenated boxes.
``roi_pool`` / ``roi_align`` pool from one level (its stride from ``in_feature_info`` gives the
spatial scale); ``multiscale_roi_align`` is ``torchvision.ops.MultiScaleRoIAlign`` (FPN level
mapping by box size, scales inferred from feature and image sizes).
"""

from __future__ import annotations

import attrs
import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align, roi_pool
from torchvision.ops.poolers import _convert_to_roi_format, _filter_input, _setup_scales

from anchorage.core import injected
from anchorage.core.interfaces import FeatureSpec, RoIExtractor
from anchorage.core.registry import ROI_EXTRACTORS
from anchorage.plugins.postprocess.batching import sorted_counts

_EXAMPLE_INFO = (FeatureSpec("p2", 8, 4), FeatureSpec("p3", 8, 8), FeatureSpec("p4", 8, 16))


def _pick(info: tuple[FeatureSpec, ...], names: tuple[str, ...] | None) -> list[FeatureSpec]:
    known = {f.name: f for f in info}
    if names is None:
        return list(info)
    missing = [n for n in names if n not in known]
    if missing:
        raise ValueError(f"featmap_names {missing} are not features; available: {list(known)}")
    return [known[n] for n in names]


class _SingleLevel(RoIExtractor):
    """Shared setup of the single-level extractors."""

    def __init__(self, cfg: object) -> None:
        super().__init__()
        info = list(cfg.in_feature_info)
        if not info:
            raise ValueError("roi extractor: in_feature_info is empty")
        self.in_feature_info = info
        name = cfg.featmap_name if cfg.featmap_name is not None else info[-1].name
        self.level = _pick(tuple(info), (name,))[0]
        self.output_size = cfg.output_size
        self.out_channels = self.level.channels
        self.spatial_scale = 1.0 / self.level.stride

    def forward(
        self,
        features: dict[str, torch.Tensor],
        boxes: list[torch.Tensor],
        image_sizes: list[tuple[int, int]],
    ) -> torch.Tensor:
        x = features[self.level.name]
        rois = self._rois(boxes).to(x)
        return self._pool(x, rois)

    def export_pool(
        self, features: dict[str, torch.Tensor], rois: torch.Tensor, image_size: tuple[int, int]
    ) -> torch.Tensor:
        """``forward`` for an exported graph: ``rois [K,5]`` (image index, xyxy batch pixels),
        every image ``image_size`` → ``[K,C,output_size,output_size]``."""
        x = features[self.level.name]
        return self._pool(x, rois.to(x))

    def _pool(self, x: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """``[R,C,output_size,output_size]`` from level ``x`` ``[B,C,H,W]`` and ``rois``."""
        raise NotImplementedError

    def _rois(self, boxes: list[torch.Tensor]) -> torch.Tensor:
        """``[R,5]`` (image index, x1, y1, x2, y2) as torchvision.ops expects."""
        if not boxes:
            return torch.zeros(0, 5)
        idx = torch.cat([torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)])
        return torch.cat([idx, torch.cat(boxes)], dim=1)


@ROI_EXTRACTORS.register("roi_pool", examples=({"in_feature_info": _EXAMPLE_INFO},))
class RoIPool(_SingleLevel):
    """Max RoI pooling (Fast R-CNN) on one level, ``torchvision.ops.roi_pool``."""

    @attrs.frozen(kw_only=True)
    class Config:
        in_feature_info: tuple[FeatureSpec, ...] = injected()
        featmap_name: str | None = None
        output_size: int = attrs.field(default=7, validator=attrs.validators.gt(0))

    def _pool(self, x: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return roi_pool(x, rois, self.output_size, self.spatial_scale)


@ROI_EXTRACTORS.register("roi_align", examples=({"in_feature_info": _EXAMPLE_INFO},))
class RoIAlign(_SingleLevel):
    """RoIAlign on one level, ``torchvision.ops.roi_align``."""

    @attrs.frozen(kw_only=True)
    class Config:
        in_feature_info: tuple[FeatureSpec, ...] = injected()
        featmap_name: str | None = None
        output_size: int = attrs.field(default=7, validator=attrs.validators.gt(0))
        sampling_ratio: int = 2
        aligned: bool = False

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.sampling_ratio = cfg.sampling_ratio
        self.aligned = cfg.aligned

    def _pool(self, x: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return roi_align(
            x, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned
        )


@ROI_EXTRACTORS.register(
    "multiscale_roi_align",
    examples=({"in_feature_info": _EXAMPLE_INFO, "featmap_names": ("p2", "p3")},),
)
class MultiScaleRoIAlignExtractor(RoIExtractor):
    """FPN RoIAlign: each box pooled from the level its size selects (FPN paper eq. 1).

    ``featmap_names`` default to every level but a trailing extra level (FPN's max-pooled
    ``p6``, which torchvision's Mask/Faster R-CNN do not pool from) — i.e. all levels except the
    last when there are more than one.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        in_feature_info: tuple[FeatureSpec, ...] = injected()
        featmap_names: tuple[str, ...] | None = None
        output_size: int = attrs.field(default=7, validator=attrs.validators.gt(0))
        sampling_ratio: int = 2
        canonical_scale: int = 224
        canonical_level: int = 4

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        info = tuple(cfg.in_feature_info)
        self.in_feature_info = list(info)
        names = cfg.featmap_names
        if names is None:
            names = tuple(f.name for f in (info[:-1] if len(info) > 1 else info))
        levels = _pick(info, names)
        if len({f.channels for f in levels}) != 1:
            raise ValueError(f"multiscale_roi_align: levels differ in channels: {levels}")
        self.output_size = cfg.output_size
        self.out_channels = levels[0].channels
        self.pool = _SortedMultiScaleRoIAlign(
            [f.name for f in levels],
            cfg.output_size,
            cfg.sampling_ratio,
            canonical_scale=cfg.canonical_scale,
            canonical_level=cfg.canonical_level,
        )

    def forward(
        self,
        features: dict[str, torch.Tensor],
        boxes: list[torch.Tensor],
        image_sizes: list[tuple[int, int]],
    ) -> torch.Tensor:
        return self.pool(features, boxes, [tuple(s) for s in image_sizes])

    def export_pool(
        self, features: dict[str, torch.Tensor], rois: torch.Tensor, image_size: tuple[int, int]
    ) -> torch.Tensor:
        """``forward`` for an exported graph: ``rois [K,5]`` (image index, xyxy batch pixels),
        every image ``image_size`` → ``[K,C,output_size,output_size]``.

        The level of each box is chosen as in ``forward``, but the number of boxes per level
        depends on the data, which an exported graph cannot slice by: every level pools every
        box and each box keeps its own level's rows (the same ``roi_align`` numbers, at
        ``levels`` times the pooling work)."""
        return self.pool.export_pool(features, rois, image_size)


class _SortedMultiScaleRoIAlign(MultiScaleRoIAlign):
    """``MultiScaleRoIAlign`` pooling each level's boxes as one slice of the level-sorted boxes.

    torchvision's ``torch.where(levels == level)`` per level is a pass over all boxes and a
    host sync each; here one stable sort groups the boxes by level, one ``.tolist()`` gives
    the group sizes; each level's pooled rows are written to their boxes' rows. The same
    ``roi_align`` per box (same scales, level mapping, sampling ratio): the same numbers.
    """

    def forward(
        self,
        x: dict[str, torch.Tensor],
        boxes: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        feats = _filter_input(x, self.featmap_names)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(
                feats, image_shapes, self.canonical_scale, self.canonical_level
            )
        rois = _convert_to_roi_format(boxes)
        if len(feats) == 1:
            return roi_align(feats[0], rois, self.output_size, self.scales[0], self.sampling_ratio)
        levels, order = self.map_levels(boxes).sort(stable=True)
        sizes = sorted_counts(levels, len(feats)).tolist()
        # zeros, not empty: on a CPU the fill pays the fresh pages' faults sequentially
        out = feats[0].new_zeros((len(rois), feats[0].shape[1], *self.output_size))
        for f, scale, idx in zip(feats, self.scales, order.split(sizes)):
            pooled = roi_align(f, rois[idx], self.output_size, scale, self.sampling_ratio)
            out[idx] = pooled.to(out.dtype)
        return out

    def export_pool(
        self, x: dict[str, torch.Tensor], rois: torch.Tensor, image_size: tuple[int, int]
    ) -> torch.Tensor:
        """``[K,C,h,w]`` for ``rois [K,5]`` without a data-dependent shape (see
        ``MultiScaleRoIAlignExtractor.export_pool``); the scales are ``forward``'s (inferred
        from the first batch it saw, else from ``image_size``)."""
        feats = _filter_input(x, self.featmap_names)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(
                feats, [tuple(image_size)], self.canonical_scale, self.canonical_level
            )
        rois = rois.to(feats[0])
        pool = [
            roi_align(f, rois, self.output_size, s, self.sampling_ratio)
            for f, s in zip(feats, self.scales)
        ]
        if len(feats) == 1:
            return pool[0]
        levels = self.map_levels([rois[:, 1:]])[:, None, None, None]
        out = pool[0]
        for level, pooled in enumerate(pool[1:], start=1):
            out = torch.where(levels == level, pooled, out)
        return out
