#!/usr/bin/env python
"""Run a trained model on images and write PNGs with its predictions drawn.

    python tools/infer.py SPEC CHECKPOINT img1.jpg img2.png --out preds/ [--score-thresh 0.3]

Every field of a model's per-image output is drawn: boxes with "class score" captions,
instance masks, and a colour overlay of semantic segmentation logits (``sem_seg``). Images
go to the model as read (0..1): models normalise inside. Class names
come from the spec's dataset, or from ``--classes a,b,c`` (label i is the i-th name).
Images with a short side under ``--min-size`` pixels (default 384) are drawn enlarged by a
whole factor so the captions stay legible; ``--min-size 0`` keeps every image's own size.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from anchorage.core import load_spec
from anchorage.core.cli import make_parser, run_tool
from anchorage.core.engine.visualize import LEGIBLE_SIZE


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("spec", help="spec file (a path, or a name in the shipped specs/)")
    parser.add_argument("checkpoint", help="checkpoint file (loaded weights-only)")
    parser.add_argument("images", nargs="+", help="image files (PNG, JPEG)")
    parser.add_argument("--out", required=True, help="output folder for the drawn PNGs")
    parser.add_argument("--score-thresh", type=float, default=0.3, help="hide lower scores")
    parser.add_argument("--classes", default=None, help="comma-separated class names")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    parser.add_argument(
        "--min-size",
        type=int,
        default=LEGIBLE_SIZE,
        help=f"enlarge drawings with a shorter short side (default {LEGIBLE_SIZE}; 0: never)",
    )
    args = parser.parse_args(argv)
    if args.min_size < 0:
        parser.error(f"--min-size: expected a size >= 0, got {args.min_size}")
    spec = load_spec(args.spec, args.overrides)
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None

    from anchorage.core.engine import predict_images

    written = predict_images(
        spec,
        args.checkpoint,
        args.images,
        args.out,
        score_thresh=args.score_thresh,
        class_names=classes,
        device=args.device,
        min_size=args.min_size,
    )
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
