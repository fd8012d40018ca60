from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.toys import toys

from anchorage.core.cli import run_tool

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import print_spec  # noqa: E402


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    (tmp_path / "base.yaml").write_text(
        "model:\n  type: toy_model\n  num_classes: 3\n  matcher: {type: toy_matcher}\n"
    )
    child = tmp_path / "child.yaml"
    child.write_text("_base_: base.yaml\nmodel:\n  sizes: [4]\n")
    return child


def test_prints_each_value_with_its_source(spec_file: Path, capsys) -> None:
    with toys():
        status = run_tool(print_spec.main, [str(spec_file), "--set", "model.num_classes=7"])
    out = capsys.readouterr().out
    assert status == 0
    assert "  num_classes: 7  # --set model.num_classes=7" in out
    assert f"  sizes: [4]  # {spec_file}" in out
    assert f"    type: toy_matcher  # {spec_file.parent / 'base.yaml'}" in out
    assert "    threshold: 0.5  # default" in out


def test_user_error_exits_2_without_traceback(spec_file: Path, capsys) -> None:
    with toys():
        status = run_tool(print_spec.main, [str(spec_file), "--set", "model.nope=1"])
    err = capsys.readouterr().err
    assert status == 2
    assert "error: --set model.nope=1: model.nope: unknown parameter 'nope'" in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(spec_file: Path) -> None:
    with toys(), pytest.raises(Exception, match="unknown parameter 'nope'"):
        run_tool(print_spec.main, [str(spec_file), "--set", "model.nope=1", "--debug"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "script",
    sorted(
        p.relative_to(ROOT).as_posix()
        for d in ("tools", "benchmarks")
        for p in (ROOT / d).glob("*.py")
    ),
)
def test_every_tool_has_help(script: str) -> None:
    path = ROOT / script
    result = subprocess.run(
        [sys.executable, str(path), "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout and "--debug" in result.stdout
