"""benchmarks/export_speed.py: one family at a tiny size, run from the outside."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "export_speed.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
        timeout=600, env=env,
    )  # fmt: skip


@pytest.mark.slow
def test_one_family_at_a_tiny_size_writes_its_row(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "speed.md"
    done = _run("--families", "tiny_ssd", "--batches", "1", "--size", "32", "--rounds", "1",
                "--profile", "--markdown", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "Load average" in text and "Command: `python benchmarks/export_speed.py" in text
    rows = [ln for ln in text.splitlines() if ln.startswith("| tiny_ssd |")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1:3] == ["1", "32x32"]
    assert float(cells[3]) > 0 and float(cells[4]) > 0 and cells[5].endswith("x")
    assert "Conv" in cells[7] and "NonMaxSuppression 1" in cells[8]


def test_help_and_a_bad_family_are_one_line_each() -> None:
    done = _run("--help")
    assert done.returncode == 0 and "--markdown" in done.stdout
    done = _run("--families", "nope")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --families: unknown ['nope']; expected some of ['tiny_ssd', 'retinanet_r18', "
        "'fcos_r18', 'yolo', 'ssd300', 'faster_rcnn_r18', 'mask_rcnn_r18', 'fcn_r18', 'unet']"
    ]
