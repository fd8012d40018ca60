"""Run an exported file: ONNX Runtime (CPU) or a loaded ExportedProgram, same results.

``load_exported(path, backend)`` → ``ExportedModel``: ``model(images)`` with a list of float
``[3,H,W]`` images (0..1) gives what ``model.eval()(images)`` gives: one dict per image,
``boxes [K,4]`` (input pixels), ``scores [K]``, ``labels [K]`` (the fixed ``[B,D]`` layout cut
at ``num_detections``), or ``sem_seg [C+1,H,W]``, or a classifier's ``labels [k]``,
``scores [k]`` (the top-k of ``probs``, k the metadata's ``topk``) and ``probs [C]`` (a
localizer's: ``boxes [1,4]``, ``scores [1]``, ``labels [1]``, ``probs [C]``), as its eager
``results``. Images of different sizes run one at a time
(the graph takes one size per batch). A wrong dtype, channel count or size (where the file
fixes it) is a ``DataError`` naming what the file expects.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from ..errors import AnchorageError, DataError
from .export import METADATA_KEY, _require

BACKENDS = ("onnxruntime", "exported_program")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The anchorage metadata stored in an exported ``.onnx`` or ``.pt2`` file."""
    return load_exported(path, _backend_of(path)).metadata


def _backend_of(path: str | Path) -> str:
    return "onnxruntime" if str(path).endswith(".onnx") else "exported_program"


def load_exported(
    path: str | Path, backend: Literal["onnxruntime", "exported_program"]
) -> ExportedModel:
    """Open ``path`` with ``backend``; AnchorageError (one line) for a missing or foreign file."""
    path = Path(path)
    if backend not in BACKENDS:
        raise AnchorageError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if not path.is_file():
        raise AnchorageError(f"{path}: exported model file not found")
    if backend == "onnxruntime":
        run, meta = _open_onnx(path)
    else:
        run, meta = _open_program(path)
    return ExportedModel(run, meta, str(path))


def _open_onnx(path: Path) -> tuple[Any, dict[str, Any]]:
    _require("onnxruntime")
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
        raise AnchorageError(f"{path}: not an ONNX model ONNX Runtime can load ({exc})") from None
    props = session.get_modelmeta().custom_metadata_map
    meta = _parse(props.get(METADATA_KEY), path)
    names = [o.name for o in session.get_outputs()]

    def run(images: torch.Tensor) -> dict[str, torch.Tensor]:
        outs = session.run(None, {"images": images.numpy()})
        return {n: torch.from_numpy(o) for n, o in zip(names, outs)}

    return run, meta


def _open_program(path: Path) -> tuple[Any, dict[str, Any]]:
    extra = {METADATA_KEY: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
    except Exception as exc:  # a zip that is no archive, a foreign version, ...
        raise AnchorageError(f"{path}: not a torch.export archive ({exc})") from None
    meta = _parse(extra[METADATA_KEY], path)
    module = program.module()
    names = meta["outputs"]

    def run(images: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return dict(zip(names, module(images)))

    return run, meta


def _parse(text: str | None, path: Path) -> dict[str, Any]:
    if not text:
        raise AnchorageError(f"{path}: no anchorage metadata (not exported by tools/export.py)")
    return json.loads(text)


class ExportedModel:
    """An exported graph with the call convention of an eval-mode anchorage model."""

    def __init__(self, run: Any, metadata: dict[str, Any], name: str) -> None:
        self.run = run
        self.metadata = metadata
        self.name = name

    @property
    def class_names(self) -> list[str]:
        return list(self.metadata.get("class_names") or [])

    def check(self, images: torch.Tensor) -> None:
        """DataError unless ``images`` is what the graph takes (float32 ``[B,3,H,W]``, and
        the batch / height / width the file fixes, or sides of at least its ``min_side``)."""
        want = self.metadata["input"]
        if images.dtype != torch.float32:
            raise DataError(
                f"{self.name}: expects float32 images in 0..1 ([B,3,H,W]), got dtype {images.dtype}"
            )
        if images.dim() != 4 or images.shape[1] != 3:
            raise DataError(
                f"{self.name}: expects [B,3,H,W] RGB images, got shape {tuple(images.shape)}"
            )
        low = want.get("min_side")
        if low and min(images.shape[-2:]) < low:
            raise DataError(
                f"{self.name}: expects height and width of at least {low} pixels, got shape "
                f"{tuple(images.shape)}"
            )
        for i, key in ((0, "batch"), (2, "height"), (3, "width")):
            if want.get(key) is not None and images.shape[i] != want[key]:
                reason = self.metadata.get("fixed", {}).get(key, "exported without --dynamic")
                raise DataError(
                    f"{self.name}: {key} is fixed at {want[key]} ({reason}), got "
                    f"{images.shape[i]} (shape {tuple(images.shape)})"
                )

    def forward_batch(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The graph's raw outputs (fixed layout) for a checked batch ``[B,3,H,W]``."""
        self.check(images)
        return self.run(images.contiguous())

    def __call__(self, images: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        out: list[dict[str, torch.Tensor]] = []
        size = self.metadata["input"].get("batch")
        for group in _same_size_runs(images, size):
            n = len(group)
            if size is not None and n < size:  # a fixed batch: fill it, keep the first n
                group = group + [group[-1]] * (size - n)
            batch = torch.stack([im.cpu() for im in group])
            out += unpack(self.forward_batch(batch), self.metadata.get("topk"))[:n]
        return out


def _same_size_runs(images: Sequence[torch.Tensor], batch: int | None) -> list[list[torch.Tensor]]:
    runs: list[list[torch.Tensor]] = []
    for im in images:
        if not isinstance(im, torch.Tensor) or im.dim() != 3:
            got = tuple(im.shape) if isinstance(im, torch.Tensor) else type(im).__name__
            raise DataError(f"expected [3,H,W] image tensors, got {got}")
        full = batch is not None and runs and len(runs[-1]) == batch
        if runs and not full and runs[-1][0].shape == im.shape:
            runs[-1].append(im)
        else:
            runs.append([im])
    return runs


def unpack(
    outputs: dict[str, torch.Tensor], topk: int | None = None
) -> list[dict[str, torch.Tensor]]:
    """Fixed-layout outputs → one dict per image: detections cut at ``num_detections``; a
    classifier's ``probs [B,C]`` → its ``topk`` best ``labels`` (1..C) and ``scores`` (all C
    when None) plus ``probs``; a localizer's (``probs`` and ``boxes [B,4]``) → one detection
    per image, its top-1 class, plus ``probs``."""
    if "sem_seg" in outputs:
        return [{"sem_seg": s} for s in outputs["sem_seg"]]
    if "probs" in outputs:
        return _classifications(outputs, topk)
    counts = outputs["num_detections"].tolist()
    keys = [k for k in ("boxes", "scores", "labels", "masks") if k in outputs]
    return [{k: outputs[k][i, :n] for k in keys} for i, n in enumerate(counts)]


def _classifications(
    outputs: dict[str, torch.Tensor], topk: int | None
) -> list[dict[str, torch.Tensor]]:
    """The eager classifier's and localizer's ``results`` from the graph's ``probs``/``boxes``
    (anchorage.plugins.models.classifier: the same top-k, the same top-1)."""
    probs = outputs["probs"]
    if "boxes" in outputs:
        score, index = probs.max(-1)
        return [
            {"boxes": b[None], "scores": s[None], "labels": i[None] + 1, "probs": p}
            for b, s, i, p in zip(outputs["boxes"], score, index, probs)
        ]
    scores, index = probs.topk(min(topk or probs.shape[-1], probs.shape[-1]), dim=-1)
    return [{"labels": i + 1, "scores": s, "probs": p} for i, s, p in zip(index, scores, probs)]
