"""Fixtures of the tool tests: the engine's toy detector and dataset, registered while a test
runs (the same module that ``tests/core/engine/launch_tool.py`` registers in subprocesses)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "tests" / "core" / "engine" / "launch_tool.py"


@pytest.fixture
def toys() -> ModuleType:
    spec = importlib.util.spec_from_file_location("launch_tool", LAUNCHER)
    launcher = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launcher)
    module = launcher.load_toys()
    with module.registered():
        yield module
