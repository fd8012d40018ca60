#!/usr/bin/env python
"""Run a trained model on images and write PNGs with its predictions drawn, plus one JSON
per image beside its PNG with the raw prediction.

    python tools/infer.py SPEC CHECKPOINT img1.jpg img2.png --out preds/ [--score-thresh 0.3]
    python tools/infer.py SPEC CHECKPOINT photos/ 'more/*.jpg' --out preds/

IMAGES are files, folders (their PNG/JPEG/BMP files, sorted) or glob patterns. Every field of
a model's per-image output is drawn: boxes with "class score" captions, instance masks, and a
colour overlay of semantic segmentation logits (``sem_seg``). Images go to the model as read
(0..1): models normalise inside. When no detection reaches the score threshold, the picture and
the console say so ("0 of 100 detections ≥ 0.30; best 0.16"). Class names come from the spec's
dataset, or from ``--classes a,b,c`` (label i is the i-th name). ``--ground-truth COCO.json``
draws an image's annotations (found by file name) beside its prediction. Images with a short
side under ``--min-size`` pixels (default 384) are drawn enlarged by a whole factor so the
captions stay legible; ``--min-size 0`` keeps every image's own size; no enlargement takes the
long side past 4096 pixels. Images over 100 megapixels or with sides in a ratio over 1000:1 are
refused; ``--out`` must be (or become) a writable folder. Consecutive images of one size run
through the model together (``--batch-size``) while ``--workers`` threads draw and write.

An exported model (``tools/export.py``) runs instead of SPEC and CHECKPOINT, through the same
drawing and JSON output (a classifier's top-k too, taken from the graph's probabilities), its
class names read from the file:

    python tools/infer.py --backend onnxruntime model.onnx img1.jpg --out preds/
    python tools/infer.py --backend exported_program model.pt2 photos/ --out preds/
"""

from __future__ import annotations

import glob
import sys
from collections.abc import Sequence
from pathlib import Path

from anchorage.core.cli import make_parser, run_tool
from anchorage.core.errors import AnchorageError

LEGIBLE_SIZE = 384  # anchorage.core.engine.visualize.LEGIBLE_SIZE (a test checks they agree)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
BACKENDS = ("onnxruntime", "exported_program")  # anchorage.core.deploy.runtime.BACKENDS


def expand_images(items: Sequence[str]) -> list[str]:
    """Files as given, folders as their image files (sorted), glob patterns expanded."""
    out: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise AnchorageError(f"{item}: folder has no {'/'.join(IMAGE_SUFFIXES)} image")
            out += found
        elif glob.has_magic(item) and not path.exists():
            found = sorted(glob.glob(item))
            if not found:
                raise AnchorageError(f"{item}: the pattern matches no file")
            out += found
        else:
            out.append(item)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.usage = (
        "%(prog)s [options] SPEC CHECKPOINT IMAGES... --out DIR\n"
        "       %(prog)s [options] --backend NAME FILE IMAGES... --out DIR"
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="SPEC CHECKPOINT IMAGES",
        help="spec file, checkpoint, then image files, folders or glob patterns (with "
        "--backend: the images only)",
    )
    parser.add_argument(
        "--backend",
        nargs=2,
        metavar=("NAME", "FILE"),
        default=None,
        help="run an exported model: onnxruntime FILE.onnx or exported_program FILE.pt2",
    )
    parser.add_argument("--out", required=True, help="output folder for the PNGs and JSONs")
    parser.add_argument(
        "--score-thresh",
        type=float,
        default=0.3,
        help="draw detections scoring at least this (default %(default)s)",
    )
    parser.add_argument("--classes", default=None, help="comma-separated class names")
    parser.add_argument(
        "--ground-truth",
        metavar="COCO.json",
        default=None,
        help="draw each image's annotations from this COCO file beside its prediction",
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    parser.add_argument(
        "--min-size",
        type=int,
        default=LEGIBLE_SIZE,
        help=f"enlarge drawings with a shorter short side (default {LEGIBLE_SIZE}; 0: never)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="consecutive images of one size run through the model together (default 8)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="threads drawing and writing while the model runs (default 2; 0: none)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.min_size < 0:
        parser.error(f"--min-size: expected a size >= 0, got {args.min_size}")
    if args.batch_size < 1 or args.workers < 0:
        parser.error(f"--batch-size >= 1 and --workers >= 0, got {args.batch_size}, {args.workers}")
    if args.backend is not None:
        if args.backend[0] not in BACKENDS:
            parser.error(
                f"--backend: expected one of {', '.join(BACKENDS)}, got {args.backend[0]!r}"
            )
        spec_file = checkpoint = None
        items = args.inputs
    elif len(args.inputs) < 3:
        parser.error("expected SPEC CHECKPOINT and at least one image (or --backend NAME FILE)")
    else:
        spec_file, checkpoint, *items = args.inputs
    images = expand_images(items)
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None

    from tqdm import tqdm

    from anchorage.core import load_spec
    from anchorage.core.engine import predict_images
    from anchorage.core.engine.pictures import targets_from_coco
    from anchorage.core.engine.workdir import check_output_dir

    check_output_dir(args.out, "--out")  # a file, or unwritable: fail before the model runs

    exported = None
    if args.backend is not None:
        from anchorage.core.deploy import load_exported

        exported = load_exported(args.backend[1], args.backend[0])
        classes = classes or exported.class_names
    spec = load_spec(spec_file, args.overrides) if spec_file else None
    truth = targets_from_coco(args.ground_truth) if args.ground_truth else None
    written = predict_images(
        spec,
        checkpoint,
        images,
        args.out,
        score_thresh=args.score_thresh,
        class_names=classes,
        device=args.device,
        min_size=args.min_size,
        ground_truth=truth,
        notify=lambda png, note: tqdm.write(f"{png}: {note}", file=sys.stderr),
        batch_size=args.batch_size,
        workers=args.workers,
        progress=not args.no_progress,
        model=exported,
    )
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
