#!/usr/bin/env python
"""Accuracy benchmark: train a spec on CPU within a time budget and check its metrics.

    python benchmarks/accuracy.py specs/tiny_ssd_shapes.yaml --minutes 10 \\
        --targets bbox/AP50=0.6 --record benchmarks/results/tiny_ssd_shapes_cpu.md
    python benchmarks/accuracy.py specs/mask_rcnn_r18_fpn_shapes.yaml --minutes 20 \\
        --targets bbox/AP50=0.5,segm/AP50=0.5 --record benchmarks/results/mask_rcnn_shapes_cpu.md
    python benchmarks/accuracy.py specs/fcn_r18_shapes.yaml --minutes 10 \\
        --targets seg/mIoU=0.6 --record benchmarks/results/fcn_r18_shapes_cpu.md

Datasets are built (generated or indexed) before the clock starts; the clock then covers the
whole ``anchorage.core.engine.train`` call: training and the final evaluation on ``--split``
(default: the spec's ``eval.split``). ``train.max_minutes`` is set to the budget minus
``--eval-reserve`` so that a slow machine still ends in time; evaluation during training is
off unless ``--eval-interval`` asks for it. The run passes when the wall time is within the
budget and every ``--targets`` metric is reached (exit status 0, else 1).

``--targets`` names metric keys as the spec's ``eval.metrics`` report them (``bbox/AP50``,
``seg/mIoU``; the ``accuracy`` metric's ``cls/top1``, ``cls/mean_acc``; ``box_iou``'s
``loc/mIoU``, ``loc/acc``); a key those metrics do not report is refused before training,
with the keys they do report.

``--threads`` defaults to the torch default. On a machine whose cores are shared with other
jobs, one intra-op thread was measured several times faster per iteration than two (OpenMP
threads wait on each other); pass ``--threads 1`` there.

The record is Markdown: machine, load average before/after, command, wall time, epochs and
iterations, metrics, PASS/FAIL and the evaluation summary.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import torch

from anchorage.benchmarking import cpu_model
from anchorage.core import load_spec
from anchorage.core.cli import make_parser, run_tool
from anchorage.core.errors import AnchorageError


def load_average() -> str:
    """1/5/15-minute load averages ('n/a' where the OS has none)."""
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def parse_targets(text: str) -> dict[str, float]:
    """``"bbox/AP50=0.5,segm/AP50=0.5"`` → ``{"bbox/AP50": 0.5, "segm/AP50": 0.5}``."""
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise AnchorageError(
                f"--targets: expected METRIC=NUMBER items separated by commas, got {item!r}"
            ) from None
        if not sep or not key.strip():
            raise AnchorageError(f"--targets: expected METRIC=NUMBER, got {item!r}")
    return out


def metric_keys(spec: object, dataset: object) -> list[str] | None:
    """The keys the spec's ``eval.metrics`` report (from their ``compute()`` before any
    image); None when a metric cannot compute without data."""
    from anchorage.core.evaluation import build_metrics

    keys: list[str] = []
    try:
        with warnings.catch_warnings():  # torchmetrics: "compute called before update"
            warnings.simplefilter("ignore")
            for metric in build_metrics(spec, list(getattr(dataset, "class_names", []))):
                keys.extend(metric.compute())
    except Exception:  # a metric that needs data to compute: leave the check out
        return None
    return keys


def check_targets(targets: dict[str, float], keys: list[str] | None) -> None:
    """Refuse a target no metric reports (it could only ever read NaN and fail)."""
    unknown = [k for k in targets if keys is not None and k not in keys]
    if unknown:
        raise AnchorageError(
            f"--targets: {', '.join(unknown)} not reported by the spec's eval.metrics; "
            f"they report: {', '.join(keys or [])}"
        )


def shown_path(arg: str) -> str:
    """An absolute path inside the working directory as a relative one (records carry no
    machine's paths); anything else unchanged."""
    path = Path(arg)
    if path.is_absolute():
        try:
            return path.relative_to(Path.cwd()).as_posix()
        except ValueError:
            return arg
    return arg


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("spec", help="spec file or shipped spec name")
    parser.add_argument("--minutes", type=float, required=True, help="time budget in minutes")
    parser.add_argument("--eval-reserve", type=float, default=1.0, help="minutes kept for eval")
    parser.add_argument("--eval-interval", type=int, default=0, help="evaluate every N epochs")
    parser.add_argument("--split", default=None, help="split evaluated at the end")
    parser.add_argument("--targets", default="", help="METRIC=MIN,... e.g. bbox/AP50=0.6")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--work-dir", default=None, help="default: work_dirs/accuracy/SPEC")
    parser.add_argument("--record", default=None, help="Markdown file to write the result to")
    parser.add_argument("--note", default="", help="free text added to the record")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.minutes <= args.eval_reserve:
        raise AnchorageError(
            f"--minutes ({args.minutes:g}) must exceed --eval-reserve ({args.eval_reserve:g})"
        )
    targets = parse_targets(args.targets)
    overrides = [
        *args.overrides,
        f"train.max_minutes={args.minutes - args.eval_reserve:g}",
        "train.device=cpu",
        f"train.eval_interval={args.eval_interval}",
    ]
    if args.split:
        overrides.append(f"eval.split={args.split}")
    spec = load_spec(args.spec, overrides)
    from anchorage.core.data import build_dataset
    from anchorage.core.engine import train

    for split in ("train", spec.section("eval").split):
        dataset = build_dataset(spec, split)  # generation / indexing is not timed
    check_targets(targets, metric_keys(spec, dataset))
    work_dir = args.work_dir or f"work_dirs/accuracy/{Path(args.spec).stem}"
    load_before = load_average()
    start = time.perf_counter()
    result = train(spec, work_dir, device="cpu", progress=False, overwrite=True)  # a fresh run
    minutes = (time.perf_counter() - start) / 60
    metrics = result["metrics"]
    reached = {k: metrics.get(k, float("nan")) >= v for k, v in targets.items()}
    passed = minutes <= args.minutes and all(reached.values())
    args_given = argv if argv is not None else sys.argv[1:]
    command = shlex.join(map(shown_path, [Path(sys.argv[0]).as_posix(), *args_given]))
    lines = [
        f"# {Path(args.spec).stem}: accuracy within {args.minutes:g} minutes on CPU",
        "",
        f"- date (UTC): {datetime.now(timezone.utc):%Y-%m-%d %H:%M}",
        f"- device: CPU, {cpu_model()}, {os.cpu_count()} logical cores, "
        f"torch {torch.__version__} with {torch.get_num_threads()} intra-op thread(s)",
        f"- load average (1/5/15 min) before: {load_before}, after: {load_average()}",
        f"- command: `{command}`",
        f"- spec: `{shown_path(args.spec)}` with `{' '.join(overrides)}`",
        f"- evaluated split: {spec.section('eval').split}",
        f"- wall time (train + final eval): {minutes:.2f} min; stopped: {result['stopped']}; "
        f"epochs {result['epoch']}, iterations {result['iteration']}",
        "- targets: "
        + (
            ", ".join(f"{k} >= {v:g}: {'yes' if reached[k] else 'no'}" for k, v in targets.items())
            or "none"
        ),
        "- metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())),
        f"- result: {'PASS' if passed else 'FAIL'}",
    ]
    if args.note:
        lines += ["", args.note]
    lines += ["", "```", result.get("summary") or "(no summary)", "```"]
    print("\n".join(lines))
    if args.record:
        path = Path(args.record)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"record written to {path}")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(run_tool(main))
