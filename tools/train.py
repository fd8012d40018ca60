#!/usr/bin/env python
"""Train a spec, evaluate it and print the COCO table.

    python tools/train.py specs/tiny_ssd_shapes.yaml --work-dir work_dirs/demo
    python tools/train.py SPEC --set train.epochs=2 --set train.optimizer.lr=0.02
    python tools/train.py SPEC --work-dir DIR --resume          # continue DIR/last.pt
    python tools/train.py SPEC --work-dir DIR --overwrite       # start DIR over
    torchrun --nproc-per-node 2 tools/train.py SPEC             # DDP, unchanged

The work dir receives last.pt (atomic checkpoint), spec.yaml (the resolved spec),
metrics.jsonl (JSON lines), tensorboard/ (scalars, predicted boxes) and predictions/
(PNGs of the final evaluation's first images with their predictions drawn). SIGINT/SIGTERM
checkpoint at the next step boundary and exit with 130/143. A work dir that holds a previous
run needs --resume or --overwrite; one run at a time may use a work dir (a lock).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from anchorage.core.cli import make_parser, run_tool


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("spec", help="spec file (a path, or a name in the shipped specs/)")
    parser.add_argument(
        "--work-dir", help="output folder (default: work_dirs/<spec name>)", default=None
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from WORK_DIR/last.pt exactly where it stopped (mid-epoch included)",
    )
    parser.add_argument(
        "--resume-from", metavar="CHECKPOINT", default=None, help="resume from this checkpoint"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in a work dir that holds a previous run (deletes its last.pt, "
        "epoch_N.pt, metrics.jsonl, spec.yaml, tensorboard/, predictions/)",
    )
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default=None, help="default: train.device"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    from anchorage.core import load_spec
    from anchorage.core.engine import TrainingStopped, train

    spec = load_spec(args.spec, args.overrides)  # train() checks the composition as it builds
    work_dir = Path(args.work_dir or Path("work_dirs") / Path(args.spec).stem)

    try:
        result = train(
            spec,
            work_dir,
            resume=args.resume_from or args.resume,
            device=args.device,
            progress=False if args.no_progress else None,
            overwrite=args.overwrite,
        )
    except TrainingStopped as exc:
        print(f"{exc}; resume with --resume", file=sys.stderr)
        return exc.exit_code
    if result["summary"]:
        print(result["summary"])
    if result["checkpoint"] and _is_main():
        keys = ("epoch", "iteration", "checkpoint", "stopped", "train_seconds", "images_per_s")
        print(json.dumps({k: result[k] for k in keys}))
    return 0


def _is_main() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


if __name__ == "__main__":
    sys.exit(run_tool(main))
