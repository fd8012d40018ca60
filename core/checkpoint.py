"""Checkpoints: atomic writes, ``weights_only`` reads, clear mismatch reports.

An anchorage checkpoint is a dict of tensors and plain data (no pickled objects):
``{"format": "anchorage", "version": 1, "model": state_dict, "spec": plain spec, ...}`` plus
whatever the engine adds (optimizer, scheduler, scaler, epoch, iteration, RNG states).
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError

FORMAT = "anchorage"
VERSION = 1


def save_checkpoint(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` atomically: a temp file in the same folder, fsync, ``os.replace``.

    A crash mid-write leaves the previous file intact. Returns the final path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "version": VERSION, **payload}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint file with ``weights_only=True``; pickled code is refused unrun."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Unsupported global" not in text:
            raise CheckpointError(
                f"{path}: not a readable checkpoint (corrupt or not a torch file)"
            ) from None
        found = text[text.index("Unsupported global") :].split(" was not")[0]
        raise CheckpointError(
            f"{path}: refused to load: the file contains pickled code or objects that a "
            f"weights-only load does not allow ({found}); nothing in it was run"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint: {exc}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(data).__name__}")
    return data


def model_state(data: Mapping[str, Any]) -> Mapping[str, torch.Tensor]:
    """The model state_dict in checkpoint ``data`` (an anchorage checkpoint or a bare one)."""
    if data.get("format") == FORMAT:
        return data["model"]
    return data


def load_checkpoint(
    model: nn.Module, path: str | Path, *, strict: bool = True, map_location: str = "cpu"
) -> dict:
    """Load model weights from ``path`` into ``model``; return the whole checkpoint dict.

    With ``strict`` a key or shape mismatch is an error listing the missing, unexpected and
    mis-shaped keys (a checkpoint from a different model).
    """
    data = read_checkpoint(path, map_location)
    state = model_state(data)
    check_state_fits(model, state, str(path), strict=strict)
    model.load_state_dict(state, strict=strict)
    return data


def check_state_fits(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str, *, strict: bool = True
) -> None:
    """Raise CheckpointError listing keys/shapes where ``state`` does not fit ``model``."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state)) if strict else []
    unexpected = sorted(set(state) - set(own)) if strict else []
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if hasattr(state[k], "shape") and state[k].shape != own[k].shape
    ]
    if not (missing or unexpected or shapes):
        return
    parts = [f"{source}: checkpoint does not fit the model ({type(model).__name__})"]
    for title, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if items:
            shown = "\n    ".join(items[:20])
            more = f"\n    ... and {len(items) - 20} more" if len(items) > 20 else ""
            parts.append(f"  {title} keys ({len(items)}):\n    {shown}{more}")
    raise CheckpointError("\n".join(parts))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
