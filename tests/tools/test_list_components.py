from __future__ import annotations

import sys
from pathlib import Path

from support.toys import toys

from anchorage.core.cli import run_tool

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import list_components  # noqa: E402


def test_lists_provider_and_parameters(capsys) -> None:
    with toys():
        status = run_tool(list_components.main, ["model"])
    out = capsys.readouterr().out
    assert status == 0
    assert "toy_model  [support: support.toys]  A model with one layer" in out
    assert "num_classes: int = required" in out
    assert "sizes: tuple[int, ...] = default [1, 2]" in out
    assert "matcher: <matcher> = required" in out
    assert "width" not in out  # injected by the parent, not a spec parameter


def test_unknown_kind_exits_2(capsys) -> None:
    assert run_tool(list_components.main, ["matchers"]) == 2
    assert "unknown kind 'matchers'" in capsys.readouterr().err
