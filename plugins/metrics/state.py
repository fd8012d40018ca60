"""Helpers for metrics whose ``torchmetrics`` state is a list of row tensors.

Such a state is a Python list of ``[N_i, width]`` tensors on the rank that updated it, and one
concatenated tensor after the cross-rank reduction (``dist_reduce_fx="cat"``); column 0 holds
the image id.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def flat(state: Any) -> torch.Tensor:
    """A list state (local) or its concatenation (after the reduction) as one tensor."""
    if isinstance(state, list):
        return torch.cat(state) if state else torch.zeros(0)
    return state


def table(state: Any, width: int) -> np.ndarray:
    """A state of ``[N_i, width]`` rows as one float64 numpy ``[N, width]``."""
    return flat(state).detach().cpu().to(torch.float64).reshape(-1, width).numpy()


def rows_by_image(rows: np.ndarray, image_ids: np.ndarray) -> dict[int, np.ndarray]:
    """Indices of ``rows`` (column 0: image id) per image id, in row order: one stable sort,
    not one scan of the table per image."""
    order = np.argsort(rows[:, 0], kind="stable")
    keys = rows[order, 0]
    starts = np.searchsorted(keys, image_ids, "left")
    ends = np.searchsorted(keys, image_ids, "right")
    return {int(i): order[a:b] for i, a, b in zip(image_ids, starts, ends)}
