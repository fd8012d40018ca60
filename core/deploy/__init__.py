"""Export of trained models and the runtimes that run the exported files.

``export_model(model, format=..., example=..., out=...)`` writes an ONNX file or a
``torch.export`` archive (``.pt2``) whose graph is the model's eval mode, postprocess and NMS
included; ``load_exported(path, backend)`` runs one with ONNX Runtime or as a loaded
ExportedProgram and gives back the per-image dicts of ``model.eval()``.

Graph I/O (``graph.py``): input ``images`` float32 ``[B,3,H,W]`` in 0..1 (the images as
read: the graph normalises and resizes inside); detection outputs in a fixed layout,
``boxes [B,D,4]`` xyxy input pixels, ``scores [B,D]``, ``labels [B,D]`` int64 (1..C),
``num_detections [B]`` int64 (rows from ``num_detections`` on are zeros), ``D`` the
postprocessor's ``detections_per_img``; semantic segmentation: ``sem_seg [B,C+1,H,W]`` logits;
classification: ``probs [B,C]`` (a localizer adds ``boxes [B,4]``).
The metadata (class names, input pipeline, versions, spec) travels inside the file.

onnx / onnxruntime are imported only here, when called (the ``export`` extra).
"""

from .export import ExportResult, export_model
from .graph import DeployGraph, deployable
from .runtime import ExportedModel, load_exported, read_metadata

__all__ = [
    "DeployGraph",
    "ExportResult",
    "ExportedModel",
    "deployable",
    "export_model",
    "load_exported",
    "read_metadata",
]
