"""Training-speed options of the ``train:`` section: AMP dtype, channels_last, torch.compile.

``resolve_amp(requested, device)`` turns ``train.amp`` into an autocast dtype: ``none`` → no
autocast; ``auto`` on CUDA → bfloat16 when the GPU supports it (``torch.cuda.is_bf16_supported``),
else float16 (the trainer's ``GradScaler`` is enabled for float16 only); ``bf16`` on a GPU
without bfloat16 falls back to float16 with a note. On the CPU ``bf16`` autocasts to bfloat16
(when asked for explicitly); ``auto`` and ``fp16`` are off there, with a note.

``prepare_model(model, channels_last=..., compile=...)`` converts the model's 4-D weights to
``torch.channels_last`` (and, through a forward pre-hook on its ``backbone``, the batched image
tensor, so convolutions run NHWC end to end) and compiles it in place with ``nn.Module.compile``
(``torch.compile``; state-dict keys, checkpoints and DDP wrapping are unchanged).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def resolve_amp(requested: str, device: torch.device) -> tuple[torch.dtype | None, str | None]:
    """(autocast dtype or None, a note for the user or None) for ``train.amp``."""
    if requested == "none":
        return None, None
    if device.type != "cuda":
        if requested == "bf16":
            return torch.bfloat16, None  # CPU autocast supports bfloat16 only
        return None, f"train.amp={requested} applies on CUDA only; training in float32"
    bf16 = torch.cuda.is_bf16_supported()
    if requested == "fp16" or (requested == "auto" and not bf16):
        return torch.float16, None
    if requested == "bf16" and not bf16:
        return torch.float16, "train.amp=bf16: this GPU has no bfloat16; float16 + grad scaler"
    return torch.bfloat16, None


def prepare_model(
    model: nn.Module, *, channels_last: bool = False, compile: bool = False
) -> nn.Module:
    """The model with ``train.channels_last`` / ``train.compile`` applied (in place)."""
    if channels_last:
        model.to(memory_format=torch.channels_last)
        target = getattr(model, "backbone", None)
        if isinstance(target, nn.Module):
            target.register_forward_pre_hook(_nhwc_inputs)
    if compile:
        model.compile()
    return model


def _nhwc_inputs(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(
        a.contiguous(memory_format=torch.channels_last)
        if isinstance(a, torch.Tensor) and a.dim() == 4
        else a
        for a in args
    )
