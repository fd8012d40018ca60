#!/usr/bin/env python
"""Write dataset samples as PNGs after the spec's transform pipeline, with boxes, labels and
masks drawn, to check annotations and augmentations by eye.

Instance masks and semantic masks are overlaid (torchvision.utils.draw_segmentation_masks),
boxes outlined with their class names (draw_bounding_boxes; crowd/difficult boxes marked
"(crowd)"). Normalised images are rescaled to 0..1 for display. Images with a short side under
``--min-size`` pixels (default 384) are enlarged by a whole factor, as tools/infer.py does.

example:
  tools/browse_dataset.py specs/_data/shapes_instance.yaml --n 16 --out work_dirs/browse
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from anchorage.core.cli import make_parser, run_tool

PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
]  # fmt: skip
SPLITS = ("train", "val", "test")
LEGIBLE_SIZE = 384  # anchorage.core.engine.visualize.LEGIBLE_SIZE (a test checks they agree)


def colour(label: int) -> tuple[int, int, int]:
    """A fixed colour per label."""
    return PALETTE[(label - 1) % len(PALETTE)]


def to_uint8(image: Any) -> Any:
    """[3,H,W] image → uint8 for drawing; values outside 0..1 (normalised) are min-max scaled."""
    import torch

    x = image.as_subclass(torch.Tensor).detach().float().cpu()
    if image.dtype == torch.uint8:
        return image.as_subclass(torch.Tensor).cpu()
    if x.min() < 0 or x.max() > 1:
        x = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-6)
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


def render(
    image: Any, target: dict[str, Any], class_names: Sequence[str], min_size: int = 0
) -> Any:
    """uint8 [3,sH,sW] with masks, boxes and labels drawn, enlarged ``s`` times when the short
    side is under ``min_size`` (the same enlargement as the prediction drawings)."""
    from anchorage.core.engine.pictures import draw_target, enlarge

    canvas, scale = enlarge(to_uint8(image), min_size)
    return draw_target(canvas, target, class_names, scale, colour)


def build_parser() -> Any:
    parser = make_parser(__doc__)
    parser.add_argument("spec", help="spec file with a data section")
    parser.add_argument("--split", default="train", choices=SPLITS)
    parser.add_argument("--n", type=int, default=16, help="number of samples to write (16)")
    parser.add_argument("--out", required=True, help="output folder for the PNGs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random augmentations")
    parser.add_argument(
        "--no-transforms", action="store_true", help="show samples before the pipeline"
    )
    parser.add_argument(
        "--min-size",
        type=int,
        default=LEGIBLE_SIZE,
        help=f"enlarge images with a shorter short side (default {LEGIBLE_SIZE}; 0: never)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.min_size < 0:
        parser.error(f"--min-size: expected a size >= 0, got {args.min_size}")
    import torch
    from PIL import Image
    from tqdm import tqdm

    from anchorage.core import load_spec
    from anchorage.core.data import build_dataset

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
        drawn = render(image, target, class_names, args.min_size)
        Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(name)
        written += 1
    print(f"wrote {written} images to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
