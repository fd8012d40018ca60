"""``export_model``: a deployable model → an ONNX file or a ``torch.export`` archive, atomically.

Both formats start from one ``torch.export.export`` of ``DeployGraph`` (non-strict); ONNX is
then ``torch.onnx.export`` of that ExportedProgram (the dynamo exporter: torchvision's ``nms``
becomes ``NonMaxSuppression``, ``roi_align`` ``RoiAlign``), checked with ``onnx.checker`` before
it is written. Metadata (``METADATA_KEY``, one JSON object) goes into the ONNX
``metadata_props`` or the archive's extra file of that name.

``dynamic``: the batch dimension is free; height and width too where the model's input
pipeline allows (a fixed-size resize), else ``ExportResult.fixed`` says why they are fixed.
Free sides range from ``MIN_SIDE`` (or the larger ``min_side`` of the model's ``export_info``)
to ``MAX_SIDE``; the metadata's ``input.min_side`` records it.
"""

from __future__ import annotations

import json
import re
import traceback
import warnings
from collections.abc import Mapping, Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Literal

import attrs
import torch
from torch import nn

from ..atomic import write_atomically
from ..errors import AnchorageError
from .graph import DeployGraph

METADATA_KEY = "anchorage"
FORMATS = ("onnx", "exported_program")
MAX_SIDE = 4096  # upper bound of a free height/width
MIN_SIDE = 16  # lower bound of a free height/width, unless the model asks for more


class ExportError(AnchorageError):
    """A model (or one of its ops) that does not export, or missing export packages."""


@attrs.frozen
class ExportResult:
    """``path`` written; ``outputs`` the graph's output names in order; ``fixed`` the
    dimensions a ``dynamic`` export kept fixed, each with the reason; ``metadata`` as stored."""

    path: Path
    outputs: tuple[str, ...]
    fixed: dict[str, str]
    metadata: dict[str, Any]


def export_model(
    model: nn.Module,
    *,
    format: Literal["onnx", "exported_program"],
    example: Sequence[torch.Tensor],
    out: str | Path,
    dynamic: bool = False,
    opset: int | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> ExportResult:
    """Export ``model`` (eval mode, CPU) traced on ``example`` (``[3,H,W]`` float images in
    0..1, all of one size) to ``out``; ``metadata`` (class names, spec, ...) is stored with the
    graph's own (input layout, outputs, normalisation, anchorage version)."""
    if format not in FORMATS:
        raise ExportError(f"format: expected one of {', '.join(FORMATS)}, got {format!r}")
    images = _stack(example)
    model = model.eval()
    graph = DeployGraph(model, images)
    info = graph.info()
    if dynamic and info.get("fixed_size_reason") is None:
        _check_side(images, _min_side(info), type(model).__name__)
    if dynamic and images.shape[0] == 1:  # torch.export specialises a size-1 dimension
        images = torch.cat([images, images])
    shapes, fixed = _dynamic_shapes(info, dynamic)
    meta = _metadata(graph, info, images, fixed, dynamic, metadata or {})
    program = _torch_export(graph, images, shapes)
    if format == "exported_program":
        text = json.dumps(meta)
        write_atomically(
            out, lambda f: torch.export.save(program, f, extra_files={METADATA_KEY: text})
        )
    else:
        proto = _to_onnx(program, graph, opset)
        _check_onnx(proto)
        meta["opset"] = _opset(proto)
        del proto.metadata_props[:]
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(meta)
        data = proto.SerializeToString()
        write_atomically(out, lambda f: f.write(data))
    return ExportResult(Path(out), graph.names, fixed, meta)


def _stack(example: Sequence[torch.Tensor]) -> torch.Tensor:
    if not example or any(
        not isinstance(t, torch.Tensor) or t.dim() != 3 or t.shape[0] != 3 for t in example
    ):
        raise ExportError("example: expected a non-empty list of [3,H,W] float images")
    if len({tuple(t.shape) for t in example}) != 1:
        raise ExportError("example: the images of one exported batch must share one size")
    return torch.stack([t.float().cpu() for t in example])


def _dynamic_shapes(info: Mapping[str, Any], dynamic: bool) -> tuple[Any, dict[str, str]]:
    if not dynamic:
        return None, {}
    dims: dict[int, Any] = {0: torch.export.Dim("batch", min=1, max=1024)}
    fixed: dict[str, str] = {}
    reason = info.get("fixed_size_reason")
    if reason is None:
        low = _min_side(info)
        dims[2] = torch.export.Dim("height", min=low, max=MAX_SIDE)
        dims[3] = torch.export.Dim("width", min=low, max=MAX_SIDE)
    else:
        fixed = {"height": reason, "width": reason}
    return (dims,), fixed


def _min_side(info: Mapping[str, Any]) -> int:
    """The smallest free height/width: ``MIN_SIDE``, or the model's larger ``min_side``."""
    return max(MIN_SIDE, int(info.get("min_side") or MIN_SIDE))


def _check_side(images: torch.Tensor, low: int, model: str) -> None:
    h, w = images.shape[-2:]
    if min(h, w) < low:
        raise ExportError(
            f"example: a dynamic export of {model} takes sides of at least {low} pixels, "
            f"got {h}x{w}"
        )


def _metadata(
    graph: DeployGraph,
    info: Mapping[str, Any],
    images: torch.Tensor,
    fixed: dict[str, str],
    dynamic: bool,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    free = dynamic and not fixed
    h, w = images.shape[-2:]
    return {
        "format_version": 1,
        "anchorage_version": _version(),
        "torch_version": torch.__version__,
        "model": type(graph.model).__name__,
        "input": {
            "name": "images",
            "dtype": "float32",
            "layout": "[B,3,H,W] RGB in 0..1",
            "batch": None if dynamic else int(images.shape[0]),
            "height": None if free else int(h),
            "width": None if free else int(w),
            "min_side": _min_side(info) if free else None,
        },
        "outputs": list(graph.names),
        "fixed": fixed,
        **dict(info),
        **dict(extra),
    }


def _version() -> str:
    try:
        return importlib_metadata.version("anchorage")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def _torch_export(graph: DeployGraph, images: torch.Tensor, shapes: Any) -> Any:
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torchvision's nms meta kernel
            return torch.export.export(graph, (images,), dynamic_shapes=shapes, strict=False)
    except Exception as exc:  # the exporter's errors have no common base class
        raise ExportError(
            f"torch.export cannot trace {type(graph.model).__name__}: {_explain(exc)}"
        ) from exc


def _to_onnx(program: Any, graph: DeployGraph, opset: int | None) -> Any:
    _require("onnx", "onnxscript")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onnx_program = torch.onnx.export(
                program,
                input_names=["images"],
                output_names=list(graph.names),
                opset_version=opset,
                dynamo=True,
                optimize=True,
                verbose=False,
            )
    except Exception as exc:
        raise ExportError(
            f"ONNX export of {type(graph.model).__name__} failed: {_explain(exc, program)}"
        ) from exc
    return onnx_program.model_proto


def _check_onnx(proto: Any) -> None:
    import onnx

    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the ONNX graph fails onnx.checker: {_first_line(exc)}") from exc


def _opset(proto: Any) -> int:
    return next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _require(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(
            f"{', '.join(missing)} not installed: install the export extra "
            "(pip install 'anchorage[export]')"
        )


_OP = re.compile(r"\b((?:aten|torchvision|prims|quantized)(?:::|\.)[A-Za-z_][\w.]*)")


def _explain(exc: BaseException, program: Any = None) -> str:
    """One line: the exporter's message, the op it names and where (module or source line)."""
    text = str(exc)
    parts = [_first_line(exc)]
    op = _OP.search(text)
    if op:
        name = op.group(1).replace("::", ".")
        module = _module_of(program, name) if program is not None else None
        parts.append(f"op {name}" + (f" in {module}" if module else ""))
    caused = re.search(r"Caused by: \(([^)]*)\)", text)
    where = caused.group(1) if caused else _source_line(exc)
    if where:
        parts.append(f"at {where}")
    return "; ".join(parts)


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


def _module_of(program: Any, op: str) -> str | None:
    """``path (Class)`` of the module whose graph node calls ``op`` (from nn_module_stack)."""
    for node in program.graph.nodes:
        if node.op != "call_function" or op not in str(node.target):
            continue
        stack = node.meta.get("nn_module_stack") or {}
        if stack:
            path, cls = list(stack.values())[-1]
            name = cls if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
            return f"{path or 'model'} ({name.rpartition('.')[2]})"
    return None


def _source_line(exc: BaseException) -> str | None:
    """The innermost traceback frame in anchorage's own code (not this package)."""
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        name = frame.filename.replace("\\", "/")
        ours = ("/plugins/" in name or "/core/" in name) and "site-packages" not in name
        if ours and "/deploy/" not in name:
            found = f"{'/'.join(name.split('/')[-3:])}:{frame.lineno} in {frame.name}"
    return found
