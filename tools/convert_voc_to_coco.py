#!/usr/bin/env python
"""Convert a Pascal VOC split (XML annotations) to one COCO-format JSON file.

The split is read and validated by the ``voc`` dataset (degenerate boxes dropped and
reported, ``difficult`` objects written as ``iscrowd: 1``), then written with the same image
ids, so COCO-style evaluation of either form gives the same numbers. ``file_name`` is
relative to VOC_ROOT: load the result with the ``coco`` dataset and ``img_dir: VOC_ROOT``.

--classes lists every class name used in the XML files, in label order. --policy decides
what happens to bad boxes (drop: dropped and reported; strict: an error). Images that cannot
be used at all (an object of a class missing from --classes, a missing or unreadable file)
are an error unless --max-bad-samples N allows skipping up to N of them.

example:
  tools/convert_voc_to_coco.py ../shared/datasets/bccd/BCCD --split test \\
      --classes RBC,WBC,Platelets --out work_dirs/bccd_test.json
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from anchorage.core.cli import make_parser, run_tool
from anchorage.core.errors import AnchorageError, DataError


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__, spec=False)
    parser.add_argument("voc_root", help="folder with Annotations/, JPEGImages/, ImageSets/Main/")
    parser.add_argument("--split", default="train", help="ImageSets/Main/<split>.txt (train)")
    parser.add_argument("--classes", required=True, help="comma-separated class names, in order")
    parser.add_argument("--out", required=True, help="output COCO JSON file")
    parser.add_argument(
        "--policy",
        choices=("drop", "strict"),
        default="drop",
        help="bad boxes (degenerate, outside the image): drop them (default) or stop",
    )
    parser.add_argument(
        "--max-bad-samples",
        type=int,
        default=0,
        help="skip up to N unusable images (unknown class, missing file) instead of stopping",
    )
    args = parser.parse_args(argv)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    if not classes:
        raise AnchorageError("--classes: give at least one class name")

    from anchorage.core.build import build_component
    from anchorage.core.data import dataset_to_coco

    try:
        dataset = build_component(
            "dataset",
            {
                "type": "voc",
                "root": args.voc_root,
                "split": args.split,
                "classes": classes,
                "policy": args.policy,
                "max_bad_samples": args.max_bad_samples,
            },
        )
    except DataError as exc:
        text = str(exc).replace("max_bad_samples=", "--max-bad-samples ")
        hint = " (add the class to --classes or raise --max-bad-samples)"
        raise DataError(text + (hint if "not a known class" in text else "")) from None
    coco = dataset_to_coco(dataset, args.voc_root)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(coco))
    tmp.replace(out)
    # problems, when there are any, were reported once already (a warning while reading)
    print(
        f"wrote {out}: {len(coco['images'])} images, {len(coco['annotations'])} annotations, "
        f"{len(classes)} categories (load with the coco dataset, img_dir: {args.voc_root})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
