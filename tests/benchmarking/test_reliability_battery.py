"""benchmarks/reliability.py: the quick cases of the battery hold, run from the outside."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "reliability.py"


@pytest.mark.slow
def test_the_fast_cases_of_the_battery_hold() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--fast"], cwd=ROOT, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    rows = [
        line for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line
    ]
    cases = {row.split(" | ")[0].removeprefix("| "): row.split(" | ")[2] for row in rows[1:]}
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(cases) >= 10 and set(cases.values()) == {"held"}, cases


def test_the_case_list_names_every_case_once() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--list"], cwd=ROOT, capture_output=True, text=True
    )
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert result.returncode == 0 and len(names) == len(set(names)) >= 19
    assert {"symlink_loop", "huge_num_classes", "sigterm_then_resume"} <= set(names)
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "nope"], cwd=ROOT, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "no case ['nope']" in bad.stderr
