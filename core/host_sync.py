"""Find the calls that would make the host wait for the GPU, without a GPU.

``torch.cuda.set_sync_debug_mode("error")`` finds host-device synchronisations only where
CUDA exists. :func:`record_host_syncs` finds the same calls on any device: it watches every
operator dispatched in its block (a ``TorchDispatchMode``) and records the ones that must
read a device value on the host when their inputs live on a GPU:

- ``.item()``, ``bool(t)``, ``int(t)``, ``float(t)`` (``aten::_local_scalar_dense``);
- ``nonzero``, ``masked_select``, ``unique``, one-argument ``torch.where`` and indexing with
  a boolean mask (the output size depends on the values);
- ``repeat_interleave`` with tensor repeats and no ``output_size``, ``bincount`` (CUDA reads
  the maximum on the host), ``equal``, ``allclose``;
- torchvision's ``nms`` (its CUDA kernel copies the suppression mask to the host);
- reads of a whole tensor on the host: ``.tolist()``, ``.numpy()``, ``.cpu()`` and
  ``.to("cpu")`` without ``non_blocking=True`` (seen as tensor methods, a
  ``TorchFunctionMode``, because on the CPU they dispatch no operator).

What it cannot see: ``.to(device)`` with a ``torch.device`` that is the CPU (on a CPU run it
cannot be told from ``.to(x.device)``, so only the string ``"cpu"`` counts),
``torch.cuda.synchronize()``, and host reads inside C++ extensions. What it sees too much: a
value read of a tensor that stays on the host on a GPU run as well (torchvision's transform
draws its random size from a CPU tensor); allow such sites by name.

Each record is a :class:`SyncSite`: the operator and the innermost Python frame outside torch
(file name, function, line), so a test can allow NMS in the postprocessor and refuse an
``.item()`` in a loss::

    with record_host_syncs() as syncs:
        model(images, targets)
    assert {(s.file, s.function) for s in syncs} <= ALLOWED
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

_ALWAYS = {
    "aten::_local_scalar_dense",
    "aten::nonzero",
    "aten::masked_select",
    "aten::_unique",
    "aten::_unique2",
    "aten::unique_dim",
    "aten::unique_consecutive",
    "aten::bincount",
    "aten::equal",
    "aten::allclose",
    "aten::is_nonzero",
    "torchvision::nms",
}
_BOOL_INDEXING = {"aten::index", "aten::index_put", "aten::index_put_", "aten::_index_put_impl_"}
_TORCH_ROOT = str(Path(torch.__file__).parent) + os.sep


class SyncSite(NamedTuple):
    """One synchronising operator call: ``op`` (e.g. ``aten::nonzero``) and where it came from."""

    op: str
    file: str
    function: str
    line: int


def _syncs(op_name: str, overload: str, args: tuple, kwargs: dict) -> bool:
    if op_name in _ALWAYS:
        return True
    if op_name in _BOOL_INDEXING:
        indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
        return any(
            isinstance(t, torch.Tensor) and t.dtype in (torch.bool, torch.uint8) for t in indices
        )
    if op_name == "aten::repeat_interleave":
        has_tensor_repeats = overload in ("Tensor", "self_Tensor")
        return has_tensor_repeats and kwargs.get("output_size") is None
    return False


def _caller() -> tuple[str, str, int]:
    """Innermost frame outside torch's own package (and this module)."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_TORCH_ROOT) and filename != __file__:
            return Path(filename).name, frame.f_code.co_name, frame.f_lineno
        frame = frame.f_back
    return "<torch>", "<unknown>", 0


def _host_read(func: Any, args: tuple, kwargs: dict) -> str | None:
    """``Tensor.tolist`` / ``numpy`` / blocking ``cpu`` / ``to(cpu)`` → its name, else None."""
    name = getattr(func, "__name__", "")
    if name in ("tolist", "numpy"):
        return f"Tensor.{name}"
    if name == "cpu" or (name == "to" and _to_cpu(args[1:], kwargs)):
        return None if kwargs.get("non_blocking") else f"Tensor.{name}"
    return None


def _to_cpu(args: tuple, kwargs: dict) -> bool:
    target = kwargs.get("device", args[0] if args else None)
    return isinstance(target, str) and torch.device(target).type == "cpu"


class _HostReads(TorchFunctionMode):
    def __init__(self, sites: list[SyncSite]) -> None:
        super().__init__()
        self.sites = sites

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None):
        kwargs = kwargs or {}
        op = _host_read(func, args, kwargs)
        if op is not None:
            self.sites.append(SyncSite(op, *_caller()))
        return func(*args, **kwargs)


class _Recorder(TorchDispatchMode):
    def __init__(self, sites: list[SyncSite]) -> None:
        super().__init__()
        self.sites = sites

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None):
        kwargs = kwargs or {}
        schema = func._schema
        if _syncs(schema.name, schema.overload_name, args, kwargs):
            self.sites.append(SyncSite(schema.name, *_caller()))
        return func(*args, **kwargs)


@contextmanager
def record_host_syncs() -> Iterator[list[SyncSite]]:
    """Yield a list that fills with a :class:`SyncSite` per synchronising call in the block."""
    sites: list[SyncSite] = []
    with _HostReads(sites), _Recorder(sites):
        yield sites


def from_host(data: Any, *, dtype: torch.dtype | None = None, device: Any = None) -> torch.Tensor:
    """``torch.tensor(data, dtype=dtype, device=device)`` without waiting for the GPU.

    ``torch.tensor(..., device="cuda")`` builds the tensor on the host and copies it with a
    blocking copy, which synchronises the stream; here the copy is ``non_blocking`` (safe:
    the host tensor is staged before the call returns). On the CPU it is ``torch.tensor``.
    """
    host = torch.tensor(data, dtype=dtype)
    if device is None or torch.device(device).type == "cpu":
        return host
    return host.to(device, non_blocking=True)
