"""Run a tool with the engine's test toys registered (tests run tools as subprocesses).

    python tests/core/engine/launch_tool.py tools/train.py SPEC ...

The toys (``tests/core/engine/toys_engine.py``) are registered for the process's lifetime;
the tool then runs exactly as from the command line (``__main__``), under torchrun too.
"""

from __future__ import annotations

import importlib.util
import runpy
import sys
from pathlib import Path

TOYS = Path(__file__).resolve().with_name("toys_engine.py")


def load_toys():  # noqa: ANN201 - returns the toys module
    """Import the toys module by path (the tests folder is not a package)."""
    if "toys_engine" in sys.modules:
        return sys.modules["toys_engine"]
    spec = importlib.util.spec_from_file_location("toys_engine", TOYS)
    module = importlib.util.module_from_spec(spec)
    sys.modules["toys_engine"] = module
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    registration = load_toys().registered()  # kept referenced: closing it unregisters
    registration.__enter__()
    tool = sys.argv[1]
    sys.argv = [tool, *sys.argv[2:]]
    runpy.run_path(tool, run_name="__main__")
