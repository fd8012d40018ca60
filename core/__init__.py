"""anchorage core: interfaces, registries, specs, plugins, checkpoints (no concrete model)."""

from .build import build_component, build_model
from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from .config import ComponentSpec, component, component_list, injected
from .errors import AnchorageError, CheckpointError, DataError, RegistryError, SpecError
from .interfaces import (
    AnchorGenerator,
    Backbone,
    BoxCoder,
    FeatureSpec,
    Head,
    Loss,
    Matcher,
    Neck,
    Postprocessor,
    RoIExtractor,
    Sampler,
)
from .plugins import hookimpl, register_plugin
from .registry import REGISTRIES, Registry, registry_for
from .spec import Spec, load_spec, register_section

__all__ = [
    "REGISTRIES",
    "AnchorGenerator",
    "AnchorageError",
    "Backbone",
    "BoxCoder",
    "CheckpointError",
    "ComponentSpec",
    "DataError",
    "FeatureSpec",
    "Head",
    "Loss",
    "Matcher",
    "Neck",
    "Postprocessor",
    "RegistryError",
    "Registry",
    "RoIExtractor",
    "Sampler",
    "Spec",
    "SpecError",
    "build_component",
    "build_model",
    "component",
    "component_list",
    "hookimpl",
    "injected",
    "load_checkpoint",
    "load_spec",
    "read_checkpoint",
    "register_plugin",
    "register_section",
    "registry_for",
    "save_checkpoint",
]
