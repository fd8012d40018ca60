"""anchorage core: interfaces, registries, specs, plugins, checkpoints (no concrete model).

Names load on first use (PEP 562), so that ``anchorage.core.cli`` and ``anchorage.core.errors``
import without torch: a tool answers ``--help`` before anything heavy is imported.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "build_child": "build",
    "build_component": "build",
    "build_model": "build",
    "load_checkpoint": "checkpoint",
    "read_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "CompositionError": "composition",
    "check_spec": "composition",
    "ComponentSpec": "config",
    "component": "config",
    "component_list": "config",
    "injected": "config",
    "AnchorageError": "errors",
    "CheckpointError": "errors",
    "DataError": "errors",
    "PluginError": "errors",
    "RegistryError": "errors",
    "SpecError": "errors",
    "AnchorGenerator": "interfaces",
    "BoxRegressionHead": "interfaces",
    "ClassificationHead": "interfaces",
    "ClassificationLoss": "interfaces",
    "LocalizationLoss": "interfaces",
    "ImagePriorLoss": "interfaces",
    "MaskLoss": "interfaces",
    "MaskPostprocessor": "interfaces",
    "ProposalGenerator": "interfaces",
    "RCNNPostprocessor": "interfaces",
    "RoIBoxHead": "interfaces",
    "RoIBoxLoss": "interfaces",
    "RoIMaskHead": "interfaces",
    "RPNHead": "interfaces",
    "RPNLoss": "interfaces",
    "SegmentationHead": "interfaces",
    "SegmentationLoss": "interfaces",
    "StyleLoss": "interfaces",
    "Anchors": "interfaces",
    "Assignment": "interfaces",
    "BoxLoss": "interfaces",
    "DenseHead": "interfaces",
    "DenseHeadConfig": "interfaces",
    "DenseLayout": "interfaces",
    "DenseLoss": "interfaces",
    "DensePostprocessConfig": "interfaces",
    "DensePostprocessor": "interfaces",
    "ObjectnessLayout": "interfaces",
    "batched_box_iou": "interfaces.matching",
    "gather_rows": "interfaces.matching",
    "DenseTargets": "interfaces",
    "GroundTruth": "interfaces",
    "IoUMatcher": "interfaces",
    "Backbone": "interfaces",
    "BoxCoder": "interfaces",
    "FeatureSpec": "interfaces",
    "Head": "interfaces",
    "Loss": "interfaces",
    "Matcher": "interfaces",
    "Neck": "interfaces",
    "Postprocessor": "interfaces",
    "RoIExtractor": "interfaces",
    "Sampler": "interfaces",
    "hookimpl": "plugins",
    "register_plugin": "plugins",
    "REGISTRIES": "registry",
    "Registry": "registry",
    "registry_for": "registry",
    "Spec": "spec",
    "load_spec": "spec",
    "register_section": "spec",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = sorted(_LAZY)
