#!/usr/bin/env python
"""Benchmark: where a tool's start-up goes before any work, by top-level package.

Runs each command in a fresh interpreter with ``python -X importtime`` and sums the import
self-time of every module under its top-level package (``torch``, ``torchvision``,
``sympy``, ``anchorage``, ...), beside the command's wall time and peak resident memory
(``ru_maxrss`` of the child); first, anchorage's own share. The commands are the starts a
user waits for: every tool's ``--help`` (answered before anything heavy is imported),
listing the components (all plugins loaded) and printing a spec (spec, sections and plugins
loaded, the model not built).
Prints a Markdown table; ``--runs`` repeats each command and keeps the fastest.

example:
  python benchmarks/startup.py --runs 3
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from anchorage.core.cli import make_parser, run_tool

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "list_components.py": ["tools/list_components.py", "--names"],
    "print_spec.py tiny_ssd_shapes": ["tools/print_spec.py", "specs/tiny_ssd_shapes.yaml"],
}
PACKAGES = 8  # the heaviest packages shown per command
OWN_SHARE = """
import sys, time
import numpy, pluggy, pycocotools.mask, torch, torchmetrics, torchvision.ops, yaml
start = time.perf_counter()
from anchorage.core.plugins import ensure_plugins_loaded
ensure_plugins_loaded()
own = [m for m in sys.modules if m.split(".")[0] == "anchorage"]
print(time.perf_counter() - start, len(own))
"""
"""anchorage's own share: its core and every plugin module imported after the libraries
they build on (``-X importtime`` misattributes modules imported through ``importlib``)."""


def run_once(argv: list[str]) -> tuple[float, float, Counter]:
    """Wall seconds, peak RSS in MB (the child's own, from ``wait4``), and import
    self-seconds per top-level package."""
    with tempfile.TemporaryFile("w+") as log:
        start = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-X", "importtime", *argv],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited with status {child.returncode}")
        log.seek(0)
        lines = log.read().splitlines()
    per_package: Counter = Counter()
    for line in lines:
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = line.removeprefix("import time:").split("|")
        per_package[name.strip().split(".")[0]] += int(self_us) / 1e6
    return wall, usage.ru_maxrss / 1024, per_package


def measure(argv: list[str], runs: int) -> tuple[float, float, Counter]:
    return min((run_once(argv) for _ in range(runs)), key=lambda r: r[0])


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__, spec=False)
    parser.add_argument("--runs", type=int, default=3, help="runs per command (fastest kept)")
    args = parser.parse_args(argv)

    tools = sorted((ROOT / "tools").glob("*.py"))
    helps = [measure([str(t.relative_to(ROOT)), "--help"], 1) for t in tools]
    rows = {f"slowest --help of {len(tools)} tools": max(helps, key=lambda r: r[0])}
    for name, command in COMMANDS.items():
        rows[name] = measure(command, args.runs)
    own = [
        subprocess.run(
            [sys.executable, "-c", OWN_SHARE], cwd=ROOT, capture_output=True, text=True,
            check=True,
        ).stdout.split()
        for _ in range(args.runs)
    ]  # fmt: skip
    seconds, modules = min(own, key=lambda r: float(r[0]))
    print(
        f"anchorage's own {modules} modules, imported after their libraries: {float(seconds):.2f} s"
    )
    print()
    print("| command | wall s | peak RSS MB | import self-time by package, s |")
    print("|---|---|---|---|")
    for name, (wall, rss, packages) in rows.items():
        top = ", ".join(f"{p} {s:.2f}" for p, s in packages.most_common(PACKAGES))
        print(f"| {name} | {wall:.2f} | {rss:.0f} | {top} |")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
