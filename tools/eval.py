#!/usr/bin/env python
"""Evaluate a checkpoint: print the metric tables (COCO) and optionally write JSON.

python tools/eval.py SPEC CHECKPOINT [--split val] [--out results.json] [--set k=v]
python tools/eval.py SPEC CHECKPOINT --detections detections.json
python tools/eval.py SPEC CHECKPOINT --pictures DIR     # e.g. DIR/confusion_matrix.png

--detections writes every detection as a COCO results list (image_id, category_id of the
dataset's annotation file, bbox [x, y, w, h] in original image pixels, score, and an RLE
segmentation for instance masks), which pycocotools' COCO.loadRes reads.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from anchorage.core.cli import make_parser, run_tool


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("spec", help="spec file (a path, or a name in the shipped specs/)")
    parser.add_argument("checkpoint", help="checkpoint file (loaded weights-only)")
    parser.add_argument("--split", default=None, help="data split (default: eval.split)")
    parser.add_argument("--out", default=None, help="write the metrics as JSON here")
    parser.add_argument(
        "--detections", metavar="FILE.json", default=None, help="write the raw detections here"
    )
    parser.add_argument(
        "--pictures", metavar="DIR", default=None,
        help="write the metrics' pictures here (a classifier's confusion_matrix.png)",
    )  # fmt: skip
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    from anchorage.core import load_spec
    from anchorage.core.engine import evaluate_checkpoint

    spec = load_spec(args.spec, args.overrides)
    result = evaluate_checkpoint(
        spec,
        args.checkpoint,
        split=args.split,
        device=args.device,
        progress=not args.no_progress,
        out=args.out,
        detections=args.detections,
        pictures=args.pictures,
    )
    for table in result.summaries:
        print(table)
    print(json.dumps(result.metrics))
    if args.detections:
        print(f"wrote {args.detections}")
    for picture in result.pictures:
        print(f"wrote {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
