"""Helpers for metrics whose ``torchmetrics`` state is a list of row tensors.

Such a state is a Python list of ``[N_i, width]`` tensors on the rank that updated it, and one
concatenated tensor after the cross-rank reduction (``dist_reduce_fx="cat"``); column 0 holds
the image id. Instance masks travel as COCO RLE: ``pack_rles`` turns a list of RLE dicts into
tensors (the ``counts`` bytes and one ``(length, h, w)`` row per mask) that such states can
hold, ``unpack_rles`` reverses it after concatenation.
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


def pack_rles(rles: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """COCO RLE dicts → their ``counts`` bytes (uint8 [L]) and ``(length, h, w)`` rows."""
    counts = [r["counts"].encode("ascii") for r in rles]
    data = torch.frombuffer(bytearray(b"".join(counts)), dtype=torch.uint8) if counts else None
    meta = [[len(c), *r["size"]] for c, r in zip(counts, rles)]
    return (
        data if data is not None else torch.zeros(0, dtype=torch.uint8),
        torch.tensor(meta, dtype=torch.float64).reshape(-1, 3),
    )


def unpack_rles(data: torch.Tensor, meta: np.ndarray) -> list[dict[str, Any]]:
    """Inverse of ``pack_rles`` (after concatenation of many images' packs)."""
    raw = bytes(data.detach().cpu().to(torch.uint8).numpy().tobytes())
    ends = np.cumsum(meta[:, 0].astype(np.int64))
    starts = ends - meta[:, 0].astype(np.int64)
    return [
        {"size": [int(h), int(w)], "counts": raw[a:b].decode("ascii")}
        for a, b, (_, h, w) in zip(starts, ends, meta)
    ]


def encode_rle(masks: torch.Tensor, threshold: float = 0.5) -> list[dict[str, Any]]:
    """Masks [K,1,H,W] or [K,H,W] (float probabilities or bool/uint8) → COCO RLE dicts
    (``{"size": [H, W], "counts": str}``) through ``pycocotools.mask.encode``."""
    from pycocotools import mask as mask_utils

    m = masks.detach().cpu()
    if m.dim() == 4:
        m = m[:, 0]
    binary = (m > threshold) if m.is_floating_point() else (m > 0)
    if len(binary) == 0:
        return []
    array = np.asfortranarray(binary.permute(1, 2, 0).numpy().astype(np.uint8))
    rles = mask_utils.encode(array)
    for r in rles:
        r["counts"] = r["counts"].decode("ascii")
    return list(rles)
