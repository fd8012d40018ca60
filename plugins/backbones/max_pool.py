"""``SeparableMaxPool2d``: ``nn.MaxPool2d`` with a fast CPU path for tensors that need no gradient.

PyTorch's CPU max-pool kernel is slow on contiguous ``[N,C,H,W]`` tensors: one thread,
``F.max_pool2d(x, 3, 2, 1)`` on a ResNet stem's ``[2,64,128,214]`` takes about 30 ms, 17× its
time on the same tensor in ``channels_last``; VGG's ``2×2`` pools and SSD's ``3×3`` stride-1
``pool5`` are 8-10× slower than need be. A max pool is separable: the max over a ``kh×kw``
window is the max over ``kh`` rows of the max over ``kw`` columns, and each of those is an
elementwise ``torch.maximum`` of ``k`` strided slices of the (``-inf``-padded) input, so
``separable_max_pool2d`` is written here from those ops (no library has it). It gives the very
values of ``F.max_pool2d`` (a max is exact; ``NaN`` propagates in both), 4-9× faster on those
tensors.

The module uses that path only where it is a pure win and changes nothing else: a CPU,
floating-point, contiguous ``[N,C,H,W]`` or ``[C,H,W]`` input that needs no gradient (inference,
or a frozen stem such as DETR's or Faster R-CNN's), ``dilation`` 1 and no ``return_indices``,
outside ``torch.compile`` / ``torch.export`` (an exported graph keeps one ``MaxPool`` node).
Everything else, CUDA included, is ``nn.MaxPool2d.forward``: the gradient of a max pool goes to
one argmax per window, which the decomposition would share between ties.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


def _out_size(n: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    """Output length of a 1-d max pool over ``n`` elements (PyTorch's ``pooling_output_shape``)."""
    out = (n + 2 * p - k + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:  # the last window must start inside input or left pad
        out -= 1
    return out


def _max_along(x: torch.Tensor, dim: int, k: int, s: int, p: int, ceil_mode: bool) -> torch.Tensor:
    """1-d max pool of ``x`` along ``dim`` (``-1`` or ``-2``), padding counted as ``-inf``."""
    n = x.shape[dim]
    out = _out_size(n, k, s, p, ceil_mode)
    span = (out - 1) * s + 1  # positions the first element of each window covers
    right = (out - 1) * s + k - n - p  # ceil mode reads past the end; floor mode may stop short
    if p or right > 0:
        pad = (p, max(right, 0)) if dim == -1 else (0, 0, p, max(right, 0))
        x = F.pad(x, pad, value=float("-inf"))
    index = [slice(None)] * x.dim()
    slices = []
    for j in range(k):
        index[dim] = slice(j, j + span, s)
        slices.append(x[tuple(index)])
    return functools.reduce(torch.maximum, slices)


def separable_max_pool2d(
    x: torch.Tensor,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    ceil_mode: bool = False,
) -> torch.Tensor:
    """``F.max_pool2d(x, kernel_size, stride, padding, ceil_mode=ceil_mode)`` from strided maxima.

    ``x`` floating ``[N,C,H,W]`` or ``[C,H,W]``; sizes as ``(height, width)`` pairs, ``padding``
    at most half the kernel (as ``F.max_pool2d`` requires). Returns ``[..., H_out, W_out]``.
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    rows = _max_along(x, -1, kw, sw, pw, ceil_mode)
    return _max_along(rows, -2, kh, sh, ph, ceil_mode)


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[-1]))


class SeparableMaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` (same arguments, same values) taking ``separable_max_pool2d`` on CPU.

    See the module docstring for when the fast path applies; otherwise it is the parent's
    ``forward``. Shapes are ``nn.MaxPool2d``'s: ``[N,C,H,W]`` or ``[C,H,W]`` → pooled.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._separable(x):
            return super().forward(x)
        k, s = _pair(self.kernel_size), _pair(self.stride or self.kernel_size)
        return separable_max_pool2d(x, k, s, _pair(self.padding), self.ceil_mode)

    def _separable(self, x: torch.Tensor) -> bool:
        k, p = _pair(self.kernel_size), _pair(self.padding)
        return (
            x.device.type == "cpu"
            and x.is_floating_point()
            and x.dim() in (3, 4)
            and x.is_contiguous()
            and not (x.requires_grad and torch.is_grad_enabled())
            and not self.return_indices
            and _pair(self.dilation) == (1, 1)
            and p[0] <= k[0] // 2
            and p[1] <= k[1] // 2
            and not torch.compiler.is_compiling()
            and all(  # too small an input: the parent raises its own error
                _out_size(n, k_, s_, p_, self.ceil_mode) >= 1
                for n, k_, s_, p_ in zip(x.shape[-2:], k, _pair(self.stride or k), p)
            )
        )


def use_separable_max_pools(module: nn.Module) -> nn.Module:
    """Replace every plain ``nn.MaxPool2d`` below ``module`` by a ``SeparableMaxPool2d`` (in place).

    Returns ``module``, or its replacement when ``module`` itself is a plain ``nn.MaxPool2d``. Max
    pools have no parameters or buffers, so state dicts are unchanged.
    """
    if type(module) is nn.MaxPool2d:
        m = module
        return SeparableMaxPool2d(
            m.kernel_size, m.stride, m.padding, m.dilation, m.return_indices, m.ceil_mode
        )
    for name, child in module.named_children():
        new = use_separable_max_pools(child)
        if new is not child:
            setattr(module, name, new)
    return module
