#!/usr/bin/env python
"""Benchmark: where the time of a COCO box evaluation goes, on a synthetic set in memory.

``--images`` images with a few ground-truth boxes each and ``--dets`` detections each (boxes
near the ground truth and false positives, random scores, ``--classes`` categories), fed to
the ``coco_bbox`` metric as ``tools/eval.py`` feeds it (one ``update`` per batch of 8). Times:
``update`` (host copies), building the COCO objects (``coco_gt`` + ``loadRes``), and
pycocotools' ``COCOeval.evaluate`` / ``accumulate`` / ``summarize``. Prints a Markdown table;
``--out FILE`` also writes it there with the command and the CPU. Times are process CPU
seconds (the evaluation is single-threaded; robust on a shared machine).

example:
  python benchmarks/coco_eval_share.py --images 5000 --out coco_eval_share.md
"""

from __future__ import annotations

import contextlib
import io
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from anchorage.benchmarking import cpu_model
from anchorage.core.cli import make_parser, run_tool
from anchorage.plugins.metrics.coco import CocoBoxMetric, CocoConfig, coco_backend


def synthetic(n: int, dets: int, classes: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Per-image detections and targets (xyxy pixels of 640×480 images, labels 1..classes)."""
    g = torch.Generator().manual_seed(seed)
    outputs, targets = [], []
    for i in range(n):
        k = int(torch.randint(1, 15, (1,), generator=g))
        xy = torch.rand(k, 2, generator=g) * torch.tensor([560.0, 400.0])
        gt = torch.cat([xy, xy + 8 + torch.rand(k, 2, generator=g) * 150], 1)
        labels = torch.randint(1, classes + 1, (k,), generator=g)
        near = gt[torch.randint(0, k, (dets,), generator=g)]
        boxes = near + torch.randn(dets, 4, generator=g) * 12
        fp = torch.rand(dets, generator=g) < 0.5  # half of them anywhere
        xy = torch.rand(dets, 2, generator=g) * 560
        boxes[fp] = torch.cat([xy, xy + 8 + torch.rand(dets, 2, generator=g) * 150], 1)[fp]
        pred_labels = torch.where(
            torch.rand(dets, generator=g) < 0.7,
            labels[torch.randint(0, k, (dets,), generator=g)],
            torch.randint(1, classes + 1, (dets,), generator=g),
        )
        scores = torch.rand(dets, generator=g).sort(descending=True).values
        outputs.append({"boxes": boxes, "scores": scores, "labels": pred_labels})
        targets.append({"boxes": gt, "labels": labels, "image_id": i, "orig_size": (480, 640)})
    return outputs, targets


def measure(
    outputs: list[dict], targets: list[dict], classes: int, backend: str = "pycocotools"
) -> dict[str, float]:
    """CPU seconds per phase of one evaluation (and the 12 numbers, under ``stats``)."""
    names = tuple(f"c{i}" for i in range(classes))
    metric = CocoBoxMetric(CocoConfig(class_names=names, backend=backend))
    cocoeval = coco_backend(backend)[1]
    t: dict[str, float] = {}
    start = time.process_time()
    for b in range(0, len(outputs), 8):
        metric.update(outputs[b : b + 8], targets[b : b + 8])
    t["update (host copies)"] = time.process_time() - start
    with contextlib.redirect_stdout(io.StringIO()):
        start = time.process_time()
        gt = metric.coco_gt()
        dt = gt.loadRes(metric.results())
        t["COCO objects (coco_gt + loadRes)"] = time.process_time() - start
        ev = cocoeval(gt, dt, iouType="bbox")
        for phase in ("evaluate", "accumulate", "summarize"):
            start = time.process_time()
            getattr(ev, phase)()
            t[f"COCOeval.{phase}"] = time.process_time() - start
    t["stats"] = list(ev.stats)  # type: ignore[assignment]
    return t


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__, spec=False)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--dets", type=int, default=100, help="detections per image (100)")
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--out", default=None, help="also write the Markdown record here")
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["pycocotools", "faster_coco_eval"],
        choices=["pycocotools", "faster_coco_eval"],
    )
    args = parser.parse_args(argv)
    outputs, targets = synthetic(args.images, args.dets, args.classes)
    runs = {b: measure(outputs, targets, args.classes, b) for b in args.backends}
    stats = {b: t.pop("stats") for b, t in runs.items()}
    totals = {b: sum(t.values()) for b, t in runs.items()}
    lines = [
        "| phase | " + " | ".join(f"{b} CPU s | share" for b in runs) + " |",
        "|---|" + "---:|---:|" * len(runs),
    ]
    for phase in next(iter(runs.values())):
        cells = [f"{t[phase]:.2f} | {t[phase] / totals[b]:.0%}" for b, t in runs.items()]
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    lines.append("| total | " + " | ".join(f"{totals[b]:.2f} | 100%" for b in runs) + " |")
    ref = np.asarray(stats[args.backends[0]])
    diff = max(float(np.abs(np.asarray(v) - ref).max()) for v in stats.values())
    table = (
        "\n".join(lines) + f"\n\nmax |difference| of the 12 numbers across backends: {diff:.1e}\n"
    )
    print(table)
    if args.out:
        command = shlex.join(sys.argv[1:] if argv is None else argv)
        head = (
            f"# COCO box evaluation: time per phase\n\n"
            f"- command: `python benchmarks/{Path(__file__).name} {command}`\n"
            f"- CPU: {cpu_model()} (python {platform.python_version()}); process CPU seconds "
            "(robust on a shared CPU)\n"
            f"- {args.images} images, {args.dets} detections and 1-14 gt boxes per image, "
            f"{args.classes} classes\n\n"
        )
        Path(args.out).write_text(head + table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
