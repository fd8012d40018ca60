#!/usr/bin/env python
"""Whole training loop vs bare model step, images/s side by side (per spec).

The model step is Trainer.train_step on one batch already on the device; the whole loop is
Trainer.run with the spec's data loader and logging (no evaluation, no checkpoints), at the
same batch size. Their ratio says how much of the model's speed a real run keeps.

examples:
  tools/loop_throughput.py specs/tiny_ssd_shapes.yaml --steps 50 --device cuda
  tools/loop_throughput.py tiny_ssd_shapes faster_rcnn_r18_fpn_bccd --set train.amp=auto \\
      --markdown benchmarks/results/loop_throughput_cuda.md
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from anchorage.core.cli import make_parser, run_tool


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="spec file or zoo name")
    parser.add_argument("--steps", type=int, default=50, help="timed steps (50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed first steps (5)")
    parser.add_argument("--batch-size", type=int, default=None, help="data.train.batch_size")
    parser.add_argument("--workers", type=int, default=None, help="data.train.num_workers")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    parser.add_argument("--markdown", default=None, help="also write the table here")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 1:
        parser.error(f"--steps and --warmup must be >= 1, got {args.steps} and {args.warmup}")
    overrides = list(args.overrides)
    if args.batch_size is not None:
        overrides.append(f"data.train.batch_size={args.batch_size}")
    if args.workers is not None:
        overrides.append(f"data.train.num_workers={args.workers}")

    from anchorage.benchmarking.loop import markdown_rows, measure_loop

    results = []
    for spec in args.specs:
        results.append(
            measure_loop(
                spec, steps=args.steps, warmup=args.warmup, overrides=overrides, device=args.device
            )
        )
        print(markdown_rows(results[-1:]).splitlines()[-1], flush=True)
    table = markdown_rows(results)
    print(table)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
