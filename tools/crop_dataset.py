#!/usr/bin/env python
"""Crop a detection dataset's boxes into an image-classification set (ImageFolder layout).

Every ground-truth box of the spec's data splits (train/val/test, e.g. BCCD's VOC splits) is
cut out of its image, enlarged by --margin on each side, and written as
DIR/<split>/<class>/<image>_<k>.png, the layout the image_folder dataset reads; crowd /
difficult boxes and boxes under --min-size pixels are skipped. Deterministic: the same files,
names and bytes on every run. DIR/summary.json records the options and counts.

example (the cell-type set of specs/resnet18_cells.yaml, from the repository root):
  python tools/crop_dataset.py specs/_data/bccd.yaml --out work_dirs/cells
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from anchorage.core.cli import make_parser, run_tool


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("spec", help="spec whose data section holds the detection splits")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--splits", default="train,val,test", help="comma-separated splits (default: all three)"
    )
    parser.add_argument(
        "--margin", type=float, default=0.1, help="context around each box, × its size (0.1)"
    )
    parser.add_argument(
        "--min-size", type=float, default=4.0, help="skip boxes with a shorter side (pixels)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing crops in DIR")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    from anchorage.core import load_spec
    from anchorage.core.data.crops import crop_dataset, summary_table

    spec = load_spec(args.spec, args.overrides)
    summary = crop_dataset(
        spec,
        args.out,
        splits=[s.strip() for s in args.splits.split(",") if s.strip()],
        margin=args.margin,
        min_size=args.min_size,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(summary_table(summary))
    print(f"wrote {args.out} (summary.json)")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
