"""Checkpoints: atomic writes, ``weights_only`` reads, clear mismatch reports.

An anchorage checkpoint is a dict of tensors and plain data (no pickled objects):
``{"format": "anchorage", "version": 1, "model": state_dict, "spec": plain spec, ...}`` plus
whatever the engine adds (optimizer, scheduler, scaler, epoch, iteration, RNG states).
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import write_atomically
from .errors import CheckpointError

FORMAT = "anchorage"
VERSION = 1


def save_checkpoint(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` atomically (``core.atomic``): a crash mid-write leaves the previous
    file intact; a full disk is a ``CheckpointError``. Returns the final path."""
    data = {"format": FORMAT, "version": VERSION, **payload}
    return write_atomically(
        path,
        lambda f: torch.save(data, f),
        error=CheckpointError,
        is_write_failure=lambda exc: isinstance(exc, RuntimeError) and _is_write_failure(exc),
    )


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint file with ``weights_only=True``; pickled code is refused unrun."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4": said in the error
            warnings.simplefilter("ignore", UserWarning)
            data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: {_unpickling_reason(str(exc))}") from None
    except EOFError:
        size = path.stat().st_size
        raise CheckpointError(
            f"{path}: not a readable checkpoint: the file ends early ({size} bytes; "
            f"{'empty' if size == 0 else 'truncated'})"
        ) from None
    except (RuntimeError, OSError, ValueError) as exc:
        reason = str(exc).strip() or type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint: {reason}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(data).__name__}")
    return data


_CODE_MARKERS = ("Unsupported global", "unsupported GLOBAL")


def _unpickling_reason(text: str) -> str:
    """The reason a weights-only load refused a file, from torch's message (its wording varies
    between versions: "Unsupported global: GLOBAL x.y was not an allowed global", "Trying to
    load unsupported GLOBAL x.y whose module x is blocked")."""
    marker = next((m for m in _CODE_MARKERS if m in text), None)
    if marker is None and "WeightsUnpickler error:" in text:
        # e.g. "Unsupported operand 149": a plain pickle (protocol 4+), not torch.save's
        after = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()
        reason = after[0].strip() if after else "unpickling failed"
        return (
            "not a readable checkpoint (corrupt, or not torch.save's format; the weights-only "
            f"loader stopped at: {reason}); nothing in it was run"
        )
    if marker is None:
        first = text.strip().splitlines()[0] if text.strip() else "unpickling failed"
        return f"not a readable checkpoint (corrupt or not a torch file: {first})"
    found = text[text.index(marker) :].splitlines()[0]
    for end in (" was not", " whose module"):
        found = found.split(end)[0]
    return (
        "refused to load: the file contains pickled code or objects that a weights-only load "
        f"does not allow ({found.strip()}); nothing in it was run"
    )


def _is_write_failure(exc: RuntimeError) -> bool:
    """torch.save's C++ writer reports a full disk as a RuntimeError ("[enforce fail at
    inline_container.cc] ... unexpected pos", "file write failed")."""
    text = str(exc)
    return any(m in text for m in ("inline_container", "write failed", "unexpected pos"))


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
