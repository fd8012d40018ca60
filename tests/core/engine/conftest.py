"""Fixtures of the engine tests: the toy detector/dataset registered while a test runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

TOYS = Path(__file__).resolve().parent / "toys_engine.py"


def load_toys() -> ModuleType:
    """The toys module, imported by path once per process."""
    if "toys_engine" not in sys.modules:
        spec = importlib.util.spec_from_file_location("toys_engine", TOYS)
        module = importlib.util.module_from_spec(spec)
        sys.modules["toys_engine"] = module
        spec.loader.exec_module(module)
    return sys.modules["toys_engine"]


@pytest.fixture
def toys() -> ModuleType:
    """The toys module with its model and dataset registered (unregistered afterwards)."""
    module = load_toys()
    with module.registered():
        yield module
