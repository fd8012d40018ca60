"""Grid anchors (``grid_anchors``) with torchvision ``AnchorGenerator`` semantics.

Per level, ``len(sizes[l]) * len(aspect_ratios[l])`` base anchors (aspect ratio = h / w,
rounded to integers as torchvision does) are shifted over the feature grid by the level's
stride ``image_size // feature_size``. Order: level, row, column, (ratio, size) — the order of
torchvision's ``AnchorGenerator`` and of a head's flattened predictions.
"""

from __future__ import annotations

import attrs
import torch

from anchorage.core.errors import SpecError
from anchorage.core.interfaces import AnchorGenerator
from anchorage.core.registry import ANCHOR_GENERATORS


def _non_empty(_inst: object, attr: attrs.Attribute, value: tuple) -> None:
    if not value or any(not v for v in value):
        raise ValueError(f"{attr.name}: expected a non-empty list of non-empty lists, got {value}")
    if any(x <= 0 for v in value for x in v):
        raise ValueError(f"{attr.name}: every value must be > 0, got {value}")


@ANCHOR_GENERATORS.register(
    "grid_anchors",
    examples=({}, {"sizes": ((16, 24), (48,)), "aspect_ratios": ((1.0,), (0.5, 2.0))}),
)
class GridAnchors(AnchorGenerator):
    """Anchors of several sizes and aspect ratios at every feature-map location.

    ``sizes``: one tuple of sizes (pixels, sqrt of the area) per level. ``aspect_ratios``: one
    tuple per level, or a single tuple used for every level.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        sizes: tuple[tuple[float, ...], ...] = attrs.field(
            default=((32,), (64,), (128,), (256,), (512,)), validator=_non_empty
        )
        aspect_ratios: tuple[tuple[float, ...], ...] = attrs.field(
            default=((0.5, 1.0, 2.0),), validator=_non_empty
        )

    def __init__(self, cfg: Config) -> None:
        n, m = len(cfg.sizes), len(cfg.aspect_ratios)
        if m not in (1, n):
            raise SpecError(
                f"grid_anchors: aspect_ratios: expected 1 or {n} lists (one per level of sizes), "
                f"got {m}"
            )
        self.cfg = cfg
        one = len(cfg.aspect_ratios) == 1
        self.aspect_ratios = cfg.aspect_ratios * len(cfg.sizes) if one else cfg.aspect_ratios
        self.cell_anchors = [
            _cell_anchors(s, r) for s, r in zip(cfg.sizes, self.aspect_ratios, strict=True)
        ]

    def num_anchors_per_location(self) -> list[int]:
        return [len(s) * len(r) for s, r in zip(self.cfg.sizes, self.aspect_ratios)]

    def __call__(
        self,
        image_size: tuple[int, int],
        feature_sizes: list[tuple[int, int]],
        *,
        device: torch.device | str = "cpu",
        per_level: bool = False,
    ) -> torch.Tensor | list[torch.Tensor]:
        if len(feature_sizes) != len(self.cell_anchors):
            raise ValueError(
                f"grid_anchors has {len(self.cell_anchors)} levels (sizes), got "
                f"{len(feature_sizes)} feature maps"
            )
        levels = [  # host → device copies that do not wait for the GPU
            _shifted(
                cell.to(device, non_blocking=True), (int(h), int(w)), _stride(image_size, (h, w))
            )
            for cell, (h, w) in zip(self.cell_anchors, feature_sizes)
        ]
        return levels if per_level else torch.cat(levels)


def _cell_anchors(sizes: tuple[float, ...], ratios: tuple[float, ...]) -> torch.Tensor:
    """``[len(ratios)*len(sizes), 4]`` zero-centred anchors, torchvision's rounding."""
    scales = torch.as_tensor(sizes, dtype=torch.float32)
    ratios_t = torch.as_tensor(ratios, dtype=torch.float32)
    h_ratios = torch.sqrt(ratios_t)
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).view(-1)
    hs = (h_ratios[:, None] * scales[None, :]).view(-1)
    return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()


def _stride(image_size: tuple[int, int], feature_size: tuple[int, int]) -> tuple[int, int]:
    return int(image_size[0]) // max(int(feature_size[0]), 1), int(image_size[1]) // max(
        int(feature_size[1]), 1
    )


def _shifted(cell: torch.Tensor, size: tuple[int, int], stride: tuple[int, int]) -> torch.Tensor:
    """Cell anchors shifted to every location of an ``h x w`` grid, row-major."""
    device = cell.device
    shifts_x = torch.arange(0, size[1], dtype=torch.int32, device=device) * stride[1]
    shifts_y = torch.arange(0, size[0], dtype=torch.int32, device=device) * stride[0]
    shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
    shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
    shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
    return (shifts.view(-1, 1, 4) + cell.view(1, -1, 4)).reshape(-1, 4).float()
