"""Building components from a validated spec."""

from __future__ import annotations

from typing import Any

from torch import nn

from .config import ComponentSpec, validate_component
from .spec import Spec


def build_model(spec: Spec) -> nn.Module:
    """Build the spec's ``model`` section (validated when the spec was loaded)."""
    return spec.model.build()


def build_component(kind: str, data: dict[str, Any], path: str = "", **injected: Any) -> Any:
    """Validate plain ``data`` (``{"type": name, ...}``) as a ``kind`` and build it.

    For code and tests; specs go through ``load_spec`` so errors name the file.
    """
    node: ComponentSpec = validate_component(kind, data, path or kind, lambda _p: "<python>")
    return node.build(**injected)


def build_child(kind: str, value: Any, **injected: Any) -> Any:
    """Build a nested component given as a validated ``ComponentSpec`` or as plain data.

    Models build their sub-components with it: specs hand them ``ComponentSpec`` nodes,
    Python callers (defaults, examples) plain ``{"type": ...}`` mappings.
    """
    if isinstance(value, ComponentSpec):
        return value.build(**injected)
    return build_component(kind, dict(value), **injected)
