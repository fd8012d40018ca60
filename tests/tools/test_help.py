"""Every tool answers ``--help`` without importing torch or torchvision (fast start-up)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = sorted(p.name for p in (ROOT / "tools").glob("*.py"))
PROBE = """
import runpy, sys
sys.argv = [{tool!r}, "--help"]
try:
    runpy.run_path({tool!r}, run_name="__main__")
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("torch", "torchvision", "numpy", "matplotlib") if m in sys.modules)
print("HEAVY", heavy, "EXIT", code)
"""


def test_every_tool_is_covered() -> None:
    assert {"train.py", "eval.py", "infer.py", "plot_metrics.py"} <= set(TOOLS)


@pytest.mark.parametrize("tool", TOOLS)
def test_help_does_not_import_torch(tool: str) -> None:
    path = str(ROOT / "tools" / tool)
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(tool=path)],
        capture_output=True,
        text=True,
        env={**os.environ, "ANCHORAGE_DISABLE_PLUGIN_AUTOLOAD": "1"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "HEAVY [] EXIT 0", done.stdout[-500:]
