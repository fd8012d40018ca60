"""Suite-wide settings: one intra-op thread per test process (the suite runs on 2 cores)."""

from __future__ import annotations

import os

import torch

os.environ.setdefault("ANCHORAGE_DISABLE_PLUGIN_AUTOLOAD", "1")
torch.set_num_threads(1)
