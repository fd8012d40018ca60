#!/usr/bin/env python
"""Benchmark: ``predict_images`` (``tools/infer.py``) over a folder of small images.

Writes ``--images`` PNGs of ``--size`` pixels (a bright square on a dark ground, seeded) and
a checkpoint of the spec's model with its initial weights into a temporary folder, then runs
``predict_images`` on them once per (batch size, drawing threads) setting, in this process,
after one warm-up run. Prints a Markdown table of seconds per image and the speed-up against
the first setting (one image per forward, drawing in the model's thread), all measured in
this run; then the share of each stage (decode, forward, draw, PNG, JSON) of a batch-1,
no-thread run, from wall-clock timers around each.

example:
  python benchmarks/infer_folder.py --images 400 --size 128
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch

from anchorage.core import build_model, load_spec
from anchorage.core.cli import make_parser, run_tool
from anchorage.core.engine import predict as predict_module
from anchorage.core.engine.predict import predict_images
from anchorage.core.engine.state import write_checkpoint

SETTINGS = ((1, 0), (8, 0), (1, 2), (8, 2))  # (batch_size, workers)


def write_images(folder: Path, count: int, size: int) -> list[Path]:
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    paths = []
    for i in range(count):
        image = torch.full((size, size, 3), 40, dtype=torch.uint8)
        x, y = torch.randint(0, size // 2, (2,), generator=g).tolist()
        image[y : y + size // 4, x : x + size // 4] = torch.randint(100, 255, (3,), generator=g)
        paths.append(folder / f"{i:04d}.png")
        Image.fromarray(image.numpy()).save(paths[-1])
    return paths


def stage_shares(run: callable) -> dict[str, float]:  # noqa: ANN001
    """Run ``run()`` with wall-clock timers around predict's stages; seconds per stage."""
    seconds: dict[str, float] = defaultdict(float)
    originals = {}

    def timed(name: str, fn: callable) -> callable:  # noqa: ANN001
        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[name] += time.perf_counter() - start

        return wrapper

    stages = {
        "decode": "read_image",
        "draw": "draw_prediction",
        "png": "_save_png",
        "json": "predictions_json",
    }
    for name, attr in stages.items():
        originals[attr] = getattr(predict_module, attr)
        setattr(predict_module, attr, timed(name, originals[attr]))
    try:
        start = time.perf_counter()
        run()
        total = time.perf_counter() - start
    finally:
        for attr, fn in originals.items():
            setattr(predict_module, attr, fn)
    seconds["forward and the rest"] = total - sum(seconds.values())
    return {k: v / total for k, v in seconds.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--spec", default="specs/tiny_ssd_shapes.yaml", help="model spec")
    parser.add_argument("--images", type=int, default=400, help="number of images")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    args = parser.parse_args(argv)
    spec = load_spec(args.spec, args.overrides)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "in").mkdir()
        paths = write_images(folder / "in", args.images, args.size)
        ckpt = write_checkpoint(folder / "model.pt", {"model": build_model(spec).state_dict()})

        def run(batch_size: int, workers: int) -> float:
            start = time.perf_counter()
            predict_images(
                spec, ckpt, paths, folder / "out", device=args.device,
                batch_size=batch_size, workers=workers,
            )  # fmt: skip
            return (time.perf_counter() - start) / len(paths)

        run(8, 2)  # warm-up: allocator, thread pools, PIL plugins
        per_image = {s: run(*s) for s in SETTINGS}
        shares = stage_shares(lambda: run(1, 0))
    base = per_image[SETTINGS[0]]
    print(f"{args.images} images of {args.size}x{args.size}, {args.spec}, device {args.device}")
    print()
    print("| batch size | drawing threads | ms / image | speed-up vs batch 1, no threads |")
    print("|---|---|---|---|")
    for (batch, workers), seconds in per_image.items():
        print(f"| {batch} | {workers} | {seconds * 1000:.1f} | {base / seconds:.2f}x |")
    print()
    print("Stages of a batch-1 run without threads: " + json.dumps(
        {k: f"{v:.0%}" for k, v in shares.items()}
    ))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
