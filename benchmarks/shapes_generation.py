#!/usr/bin/env python
"""Benchmark: wall time to generate the built-in shapes set (images + COCO JSON with RLE masks).

Generates into a fresh temporary cache folder (never reusing a cache), once per worker count,
and prints a Markdown table; ``--out FILE`` also writes it there with the command and device.

example:
  python benchmarks/shapes_generation.py --num-images 1000 --size 128 --workers 1 2 \\
      --out benchmarks/results/shapes_generation_cpu.md
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from anchorage.benchmarking import cpu_model
from anchorage.core.cli import make_parser, run_tool
from anchorage.plugins.datasets.shapes import GenParams, ShapesDataset, ensure_generated


def run(num_images: int, size: int, workers: int, fmt: str) -> tuple[float, int]:
    """Seconds to generate ``num_images`` images of ``size``² with ``workers`` processes."""
    defaults = ShapesDataset.Config()
    params = GenParams(
        **{
            "split": "train",
            "num_images": num_images,
            "image_size": (size, size),
            "min_objects": defaults.min_objects,
            "max_objects": defaults.max_objects,
            "min_size": defaults.min_size,
            "max_size": defaults.max_size,
            "classes": defaults.classes,
            "background": defaults.background,
            "noise": defaults.noise,
            "max_occlusion": defaults.max_occlusion,
            "rotation": defaults.rotation,
            "seed": 0,
            "format": fmt,
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        folder = ensure_generated(params, Path(tmp), workers)
        seconds = time.perf_counter() - start
        n_bytes = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return seconds, n_bytes


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__, spec=False)
    parser.add_argument("--num-images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--format", choices=("png", "jpg"), default="png")
    parser.add_argument("--out", help="write the Markdown result here")
    args = parser.parse_args(argv)
    load_start = os.getloadavg()[0]
    rows = []
    for w in args.workers:
        seconds, n_bytes = run(args.num_images, args.size, w, args.format)
        rows.append(
            f"| {args.num_images} | {args.size}x{args.size} | {args.format} | {w} | "
            f"{seconds:.1f} | {args.num_images / seconds:.0f} | {n_bytes / 1e6:.1f} |"
        )
        print(rows[-1], flush=True)
    command = "python benchmarks/shapes_generation.py " + shlex.join(sys.argv[1:])
    text = "\n".join(
        [
            "# Shapes generation benchmark",
            "",
            f"Command: `{command}`",
            "",
            f"Device: {cpu_model()}, {os.cpu_count()} cores visible (CPU only); "
            f"Python {platform.python_version()}; 1-min load average {load_start:.1f} at start, "
            f"{os.getloadavg()[0]:.1f} at end (other jobs share the machine).",
            "",
            "Default generation parameters (1-4 objects, sizes 12-80 px, noise background, "
            "RLE masks in the COCO JSON); a fresh cache folder per run.",
            "",
            "| images | size | format | workers | wall s | images/s | MB written |",
            "|---:|---|---|---:|---:|---:|---:|",
            *rows,
            "",
        ]
    )
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_tool(main))
