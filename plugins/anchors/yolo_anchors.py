"""YOLO anchors (``yolo_anchors``): anchor shapes per level, in input pixels, at cell centres.

Each level is an ``h × w`` grid of cells of ``stride = image_size // feature_size`` pixels; every
cell holds the level's anchor shapes ``(w, h)`` centred on the cell centre
``((col + 0.5) * stride, (row + 0.5) * stride)``. Order: level, row, column, shape — the order
of ``yolo_head``'s flattened predictions. Shapes come from the data with
``tools/kmeans_anchors.py`` (k-means on training boxes' sizes, 1 − IoU distance).
"""

from __future__ import annotations

import attrs
import torch

from anchorage.core.host_sync import from_host
from anchorage.core.interfaces import AnchorGenerator
from anchorage.core.registry import ANCHOR_GENERATORS

# YOLOv3's COCO shapes for a 416 px input, fine → coarse.
YOLOV3_SHAPES = (
    ((10, 13), (16, 30), (33, 23)),
    ((30, 61), (62, 45), (59, 119)),
    ((116, 90), (156, 198), (373, 326)),
)


def _shapes(_inst: object, attr: attrs.Attribute, value: tuple) -> None:
    if not value or any(not level for level in value):
        raise ValueError(
            f"{attr.name}: expected one non-empty list of [w, h] per level, got {value}"
        )
    for level in value:
        for shape in level:
            if len(shape) != 2 or min(shape) <= 0:
                raise ValueError(f"{attr.name}: every shape must be [w, h] > 0, got {list(shape)}")


@ANCHOR_GENERATORS.register(
    "yolo_anchors", examples=({}, {"shapes": (((8, 8), (16, 8)), ((32, 32),))})
)
class YoloAnchors(AnchorGenerator):
    """Anchor shapes per level centred on each grid cell.

    ``shapes``: per level (fine → coarse) a list of ``[w, h]`` in pixels of the model's input.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        shapes: tuple[tuple[tuple[float, float], ...], ...] = attrs.field(
            default=YOLOV3_SHAPES, validator=_shapes
        )

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def num_anchors_per_location(self) -> list[int]:
        return [len(level) for level in self.cfg.shapes]

    def __call__(
        self,
        image_size: tuple[int, int],
        feature_sizes: list[tuple[int, int]],
        *,
        device: torch.device | str = "cpu",
        per_level: bool = False,
    ) -> torch.Tensor | list[torch.Tensor]:
        if len(feature_sizes) != len(self.cfg.shapes):
            raise ValueError(
                f"yolo_anchors has {len(self.cfg.shapes)} levels (shapes), got "
                f"{len(feature_sizes)} feature maps"
            )
        levels = [
            _level(from_host(shapes, dtype=torch.float32, device=device), image_size, size)
            for shapes, size in zip(self.cfg.shapes, feature_sizes)
        ]
        return levels if per_level else torch.cat(levels)


def _level(
    shapes: torch.Tensor, image_size: tuple[int, int], feature_size: tuple[int, int]
) -> torch.Tensor:
    """``[h*w*S, 4]`` xyxy: the ``S`` shapes ``[S,2]`` at every cell centre, row-major."""
    h, w = int(feature_size[0]), int(feature_size[1])
    sy, sx = int(image_size[0]) // max(h, 1), int(image_size[1]) // max(w, 1)
    ys = (torch.arange(h, device=shapes.device, dtype=torch.float32) + 0.5) * sy
    xs = (torch.arange(w, device=shapes.device, dtype=torch.float32) + 0.5) * sx
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    centres = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2)
    half = shapes.view(1, -1, 2) / 2
    return torch.cat([centres - half, centres + half], dim=-1).reshape(-1, 4)
