#!/usr/bin/env python
"""Write dataset samples as PNGs after the spec's transform pipeline, with boxes, labels and
masks drawn, to check annotations and augmentations by eye.

Instance masks and semantic masks are overlaid (torchvision.utils.draw_segmentation_masks),
boxes outlined with their class names (draw_bounding_boxes; crowd/difficult boxes marked
"(crowd)"). Normalised images are rescaled to 0..1 for display.

example:
  tools/browse_dataset.py specs/_data/shapes_instance.yaml --n 16 --out work_dirs/browse
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks
from tqdm import tqdm

from anchorage.core import load_spec
from anchorage.core.cli import make_parser, run_tool
from anchorage.core.data import SPLITS, build_dataset

PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
]  # fmt: skip


def colour(label: int) -> tuple[int, int, int]:
    """A fixed colour per label."""
    return PALETTE[(label - 1) % len(PALETTE)]


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """[3,H,W] image → uint8 for drawing; values outside 0..1 (normalised) are min-max scaled."""
    x = image.as_subclass(torch.Tensor).detach().float().cpu()
    if image.dtype == torch.uint8:
        return image.as_subclass(torch.Tensor).cpu()
    if x.min() < 0 or x.max() > 1:
        x = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-6)
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


def render(image: torch.Tensor, target: dict[str, Any], class_names: Sequence[str]) -> torch.Tensor:
    """uint8 [3,H,W] with masks, boxes and labels drawn."""
    canvas = to_uint8(image)
    labels = target.get("labels", torch.zeros(0, dtype=torch.int64)).tolist()
    if "semantic_mask" in target:
        sem = target["semantic_mask"].as_subclass(torch.Tensor)
        present = [c for c in sem.unique().tolist() if 0 < c < 255]
        if present:
            masks = torch.stack([sem == c for c in present])
            canvas = draw_segmentation_masks(canvas, masks, 0.45, [colour(c) for c in present])
    if "masks" in target and len(labels):
        masks = target["masks"].as_subclass(torch.Tensor).bool()
        canvas = draw_segmentation_masks(canvas, masks, 0.45, [colour(c) for c in labels])
    if len(labels):
        crowd = target.get("iscrowd", torch.zeros(len(labels))).tolist()
        names = [
            (class_names[c - 1] if 0 < c <= len(class_names) else str(c))
            + (" (crowd)" if k else "")
            for c, k in zip(labels, crowd)
        ]
        boxes = target["boxes"].as_subclass(torch.Tensor)
        canvas = draw_bounding_boxes(canvas, boxes, names, [colour(c) for c in labels], width=1)
    return canvas


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("spec", help="spec file with a data section")
    parser.add_argument("--split", default="train", choices=SPLITS)
    parser.add_argument("--n", type=int, default=16, help="number of samples to write (16)")
    parser.add_argument("--out", required=True, help="output folder for the PNGs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random augmentations")
    parser.add_argument(
        "--no-transforms", action="store_true", help="show samples before the pipeline"
    )
    args = parser.parse_args(argv)
    spec = load_spec(args.spec, args.overrides)
    dataset = build_dataset(spec, args.split, transforms=not args.no_transforms)
    class_names = list(getattr(dataset, "class_names", []))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    written = 0
    for i in tqdm(range(min(args.n, len(dataset))), desc="browse", unit="img"):
        sample = dataset[i]
        if sample is None:  # skipped bad sample (max_bad_samples)
            continue
        image, target = sample
        name = out / f"{i:04d}_id{target.get('image_id', i)}.png"
        Image.fromarray(render(image, target, class_names).permute(1, 2, 0).numpy()).save(name)
        written += 1
    print(f"wrote {written} images to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
