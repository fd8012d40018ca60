"""tools/style_transfer.py end to end: tiny images, random VGG-19, a few steps."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch
from PIL import Image
from torchvision.utils import save_image

from anchorage.core.cli import run_tool

TOOL = Path(__file__).resolve().parents[2] / "tools" / "style_transfer.py"


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("style_transfer_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_tool_writes_image_of_content_size(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    content, style, out = tmp_path / "c.png", tmp_path / "s.png", tmp_path / "out" / "r.png"
    save_image(torch.rand(3, 36, 50), content)
    save_image(torch.rand(3, 24, 24), style)
    args = [str(content), str(style), "--out", str(out), "--steps", "4", "--size", "32"]
    args += ["--device", "cpu", "--log-dir", str(tmp_path / "tb")]
    args += ["--spec", "style_transfer_d2l.yaml", "--set", "style_transfer.log_every=2"]
    assert run_tool(_load_tool().main, args) == 0  # in-process: no second torch import
    captured = capsys.readouterr()
    assert "RANDOM weights" in captured.err  # no --weights given
    assert "step 4: loss_content" in captured.out and "loss_tv" in captured.out
    assert Image.open(out).size == (50, 36)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_tool_user_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tool = _load_tool()
    save_image(torch.rand(3, 8, 8), tmp_path / "c.png")
    args = [str(tmp_path / "c.png"), str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")]
    assert run_tool(tool.main, args) == 2
    assert "missing.png" in capsys.readouterr().err
    assert run_tool(tool.main, [*args[:1], args[0], "--out", "o.png", "--steps", "0"]) == 2
    assert "steps" in capsys.readouterr().err
