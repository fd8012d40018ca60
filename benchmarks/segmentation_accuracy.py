#!/usr/bin/env python
"""Accuracy benchmark: train a segmentation spec on CPU within a time budget, report mIoU.

    python benchmarks/segmentation_accuracy.py                       # fcn_r18_shapes, 10 min
    python benchmarks/segmentation_accuracy.py --spec specs/unet_shapes.yaml --threads 2 \\
        --record benchmarks/results/unet_shapes_cpu.md

Datasets are generated (or found in the cache) before the clock starts; the clock then covers
the whole ``anchorage.core.engine.train`` call — training and the final evaluation on the
spec's eval split. ``train.max_minutes`` is set to the budget minus ``--eval-reserve`` so that
a slow (shared) machine still ends in time. The record is a Markdown file with the machine,
the load average, the command, the wall time, the epochs/iterations done and the metric table;
the run passes when the time is within the budget and ``seg/mIoU`` reaches ``--target``.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import torch

from anchorage.core import load_spec
from anchorage.core.cli import make_parser, run_tool


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (the platform's processor string elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    """1/5/15-minute load averages ('n/a' where the OS has none)."""
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def prepare_data(spec: object) -> None:
    """Build every dataset of the spec once, so that generation is not timed."""
    from anchorage.core.data import build_dataset

    for split in ("train", "val", "test"):
        if getattr(spec.section("data"), split, None) is not None:
            build_dataset(spec, split)


def record(path: Path, lines: list[str]) -> None:
    """Write the Markdown record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"record written to {path}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--spec", default="specs/fcn_r18_shapes.yaml")
    parser.add_argument("--minutes", type=float, default=10.0, help="time budget (default 10)")
    parser.add_argument("--eval-reserve", type=float, default=1.0, help="minutes kept for eval")
    parser.add_argument("--target", type=float, default=0.6, help="seg/mIoU to reach")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: on the shared 2-core machine a second thread "
        "waited on other processes and ran 3-10x slower)",
    )
    parser.add_argument("--work-dir", default="work_dirs/segmentation_accuracy")
    parser.add_argument("--record", default="benchmarks/results/fcn_r18_shapes_cpu.md")
    parser.add_argument("--note", default="", help="free text added to the record")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    budget = args.minutes - args.eval_reserve
    overrides = [*args.overrides, f"train.max_minutes={budget}", "train.device=cpu"]
    spec = load_spec(args.spec, overrides)
    prepare_data(spec)
    from anchorage.core.engine import train

    load_before = load_average()
    start = time.perf_counter()
    result = train(spec, args.work_dir, device="cpu", progress=False)
    minutes = (time.perf_counter() - start) / 60
    miou = result["metrics"].get("seg/mIoU", float("nan"))
    passed = minutes <= args.minutes and miou >= args.target
    command = shlex.join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])])
    lines = [
        f"# {Path(args.spec).stem}: accuracy within {args.minutes:g} minutes on CPU",
        "",
        f"- date (UTC): {datetime.now(timezone.utc):%Y-%m-%d %H:%M}",
        f"- device: CPU, {cpu_name()}, {os.cpu_count()} logical cores, "
        f"torch {torch.__version__} with {args.threads} intra-op thread(s)",
        f"- load average (1/5/15 min) before: {load_before}, after: {load_average()}",
        f"- command: `{command}`",
        f"- spec: `{args.spec}` with `{' '.join(overrides)}`",
        f"- wall time (train + final eval): {minutes:.2f} min; stopped: {result['stopped']}; "
        f"epochs {result['epoch']}, iterations {result['iteration']}",
        f"- seg/mIoU {miou:.4f} (target {args.target}); "
        + ", ".join(f"{k} {v:.4f}" for k, v in sorted(result["metrics"].items())),
        f"- result: {'PASS' if passed else 'FAIL'}",
    ]
    if args.note:
        lines += ["", args.note]
    lines += ["", "```", result["summary"] or "(no summary)", "```"]
    record(Path(args.record), lines)
    print("\n".join(lines))
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(run_tool(main))
