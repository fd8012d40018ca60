"""``ssd_default_boxes``: SSD default boxes with torchvision ``DefaultBoxGenerator`` semantics."""

from __future__ import annotations

import attrs
import torch
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList

from anchorage.core.interfaces import AnchorGenerator
from anchorage.core.registry import ANCHOR_GENERATORS


def _check(inst: SSDDefaultBoxes.Config) -> None:
    levels = len(inst.aspect_ratios)
    if levels == 0 or any(r <= 0 for rs in inst.aspect_ratios for r in rs):
        raise ValueError(
            f"aspect_ratios: expected one list of ratios > 0 per level, got {inst.aspect_ratios}"
        )
    if inst.steps is not None and len(inst.steps) != levels:
        raise ValueError(f"steps: expected {levels} values (one per level), got {inst.steps}")
    if inst.scales is not None and len(inst.scales) < levels + 1:
        raise ValueError(
            f"scales: expected {levels + 1} values (levels + 1), got {len(inst.scales)}"
        )
    if not 0 < inst.min_ratio < inst.max_ratio:
        raise ValueError(
            f"expected 0 < min_ratio < max_ratio, got {inst.min_ratio}, {inst.max_ratio}"
        )


@ANCHOR_GENERATORS.register(
    "ssd_default_boxes",
    examples=(
        {},
        {
            "aspect_ratios": ((2.0,), (2.0, 3.0)),
            "scales": (0.1, 0.4, 0.8),
            "steps": (8, 16),
            "clip": False,
        },
    ),
)
class SSDDefaultBoxes(AnchorGenerator):
    """SSD's default boxes (``torchvision.models.detection.anchor_utils.DefaultBoxGenerator``).

    Per level k: boxes of scale ``s_k`` and ``sqrt(s_k s_{k+1})`` with ratio 1, then a pair
    ``(s_k√r, s_k/√r)``, ``(s_k/√r, s_k√r)`` for each aspect ratio r — ``2 + 2·len(ratios)`` per
    location. Scales are relative to the image (``scales``, or spread linearly from
    ``min_ratio`` to ``max_ratio``); centres are at ``(j + 0.5) · step`` pixels when ``steps``
    are given, else on the feature grid. ``clip`` clamps the relative sizes to 0..1. The boxes
    come from torchvision's own generator, so they are bit for bit the same.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        aspect_ratios: tuple[tuple[float, ...], ...] = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
        min_ratio: float = 0.15
        max_ratio: float = 0.9
        scales: tuple[float, ...] | None = None
        steps: tuple[int, ...] | None = None
        clip: bool = True

        def __attrs_post_init__(self) -> None:
            _check(self)

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.generator = DefaultBoxGenerator(
            [list(r) for r in cfg.aspect_ratios],
            min_ratio=cfg.min_ratio,
            max_ratio=cfg.max_ratio,
            scales=None if cfg.scales is None else list(cfg.scales),
            steps=None if cfg.steps is None else list(cfg.steps),
            clip=cfg.clip,
        )
        self._cache: dict[tuple, torch.Tensor] = {}

    def num_anchors_per_location(self) -> list[int]:
        return self.generator.num_anchors_per_location()

    def __call__(
        self,
        image_size: tuple[int, int],
        feature_sizes: list[tuple[int, int]],
        *,
        device: torch.device | str = "cpu",
        per_level: bool = False,
    ) -> torch.Tensor | list[torch.Tensor]:
        sizes = [(int(h), int(w)) for h, w in feature_sizes]
        if len(sizes) != len(self.cfg.aspect_ratios):
            raise ValueError(
                f"ssd_default_boxes: {len(sizes)} feature maps but aspect_ratios for "
                f"{len(self.cfg.aspect_ratios)} levels"
            )
        key = (tuple(image_size), tuple(sizes), str(device))
        anchors = self._cache.get(key)
        if anchors is None:
            # DefaultBoxGenerator.forward reads only shapes, dtype and device from its inputs.
            h, w = image_size
            image = ImageList(torch.empty(1, 1, h, w), [(h, w)])
            maps = [torch.empty(1, 1, fh, fw) for fh, fw in sizes]
            anchors = self.generator(image, maps)[0].to(device)
            self._cache = {key: anchors}
        if not per_level:
            return anchors
        counts = [fh * fw * n for (fh, fw), n in zip(sizes, self.num_anchors_per_location())]
        return list(anchors.split(counts))
