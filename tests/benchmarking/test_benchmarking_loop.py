"""Whole loop vs model step throughput (benchmarking/loop.py, tools/loop_throughput.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from anchorage.benchmarking.loop import LoopThroughput, markdown_rows, measure_loop

ROOT = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("loop_tool", ROOT / "tools/loop_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_measure_loop_reports_both_numbers(tmp_path: Path) -> None:
    result = measure_loop(
        ROOT / "specs/tiny_ssd_shapes.yaml",
        steps=2,
        warmup=1,
        overrides=["data.train.batch_size=2", "data.train.dataset.num_images=8"],
        device="cpu",
        work_dir=tmp_path,
    )
    assert result.batch_size == 2 and result.steps == 2 and result.device == "cpu"
    assert result.model_step_ips > 0 and result.loop_ips > 0
    assert not (tmp_path / "loop" / "last.pt").exists()  # no checkpoint, no final evaluation
    table = markdown_rows([result])
    assert "model step images/s" in table and f"{result.ratio:.2f}" in table


def test_ratio_and_table() -> None:
    r = LoopThroughput(
        spec="s.yaml", device="cuda", batch_size=8, steps=50, model_step_ips=200, loop_ips=170
    )
    assert r.ratio == pytest.approx(0.85)
    assert (
        markdown_rows([r]).splitlines()[-1] == "| s.yaml | cuda | 8 | 50 | 200.0 | 170.0 | 0.85 |"
    )


def test_tool_rejects_zero_steps(capsys) -> None:
    tool = _tool()
    with pytest.raises(SystemExit) as exc:
        tool.main(["tiny_ssd_shapes", "--steps", "0"])
    assert exc.value.code == 2
    assert "--steps and --warmup must be >= 1" in capsys.readouterr().err
