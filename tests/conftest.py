"""Suite-wide settings: one intra-op thread per test process (the suite runs on 2 cores),
plugins loaded once, and a seeded global RNG per test."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("ANCHORAGE_DISABLE_PLUGIN_AUTOLOAD", "1")
torch.set_num_threads(1)

from anchorage.core.plugins import ensure_plugins_loaded  # noqa: E402

# The suite's one named loading point: tests look registries up directly, and a lookup
# never loads plugins by itself.
ensure_plugins_loaded()


@pytest.fixture(autouse=True)
def _seeded_global_rng() -> None:
    """Every test starts from the same global RNG state, whatever ran before it (or in which
    worker): randomly initialised weights are then the same in CI as on a laptop."""
    torch.manual_seed(0)
