#!/usr/bin/env python
"""Plot the training curves of one or several runs from their metrics.jsonl, as one PNG.

    python tools/plot_metrics.py work_dirs/demo --out curves.png
    python tools/plot_metrics.py work_dirs/a work_dirs/b --out compare.png --metrics bbox/AP

One panel per loss term (train rows), one for the learning rate, one per evaluation metric
(default: the AP / AP50 / AP75 / mIoU summary numbers; --metrics picks others), with one
line per run (x: iteration). A resumed run's rows count once.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from anchorage.core.cli import make_parser, run_tool


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__, spec=False)
    parser.add_argument("runs", nargs="+", metavar="WORK_DIR", help="work dir or metrics.jsonl")
    parser.add_argument(
        "--out", default=None, help="PNG to write (default: metrics.png in the first WORK_DIR)"
    )
    parser.add_argument(
        "--metrics", default="", help="comma-separated eval metrics to draw, e.g. bbox/AP,bbox/AP50"
    )
    parser.add_argument(
        "--labels", default="", help="comma-separated run names (default: the folder names)"
    )
    args = parser.parse_args(argv)

    from anchorage.core.engine.curves import plot_runs, read_metrics
    from anchorage.core.errors import AnchorageError

    labels = [x.strip() for x in args.labels.split(",") if x.strip()]
    if labels and len(labels) != len(args.runs):
        raise AnchorageError(f"--labels: {len(labels)} names for {len(args.runs)} runs")
    runs = {}
    for i, run in enumerate(args.runs):
        path = Path(run)
        name = labels[i] if labels else (path.name if path.is_dir() else path.parent.name)
        while name in runs:
            name += "'"
        runs[name] = read_metrics(path)
    first = Path(args.runs[0])
    out = args.out or str((first if first.is_dir() else first.parent) / "metrics.png")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    print(f"wrote {plot_runs(runs, out, metrics=metrics)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
