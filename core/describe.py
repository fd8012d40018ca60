"""Human-readable views of specs and registries (used by print_spec and list_components)."""

from __future__ import annotations

import typing
from typing import Any

import attrs
import yaml

from .config import ComponentSpec, to_plain
from .registry import REGISTRIES, Entry
from .spec import Spec


def describe_spec(spec: Spec, *, defaults: bool = True) -> str:
    """The resolved spec as YAML-like text, each value annotated with where it was set.

    Values not set anywhere are shown with ``# default`` when ``defaults`` is true.
    """
    lines: list[str] = []
    for name, value in spec.sections.items():
        lines.append(f"{name}:")
        _describe_value(value, name, 1, spec, defaults, lines)
    return "\n".join(lines)


def _describe_value(
    value: Any, path: str, depth: int, spec: Spec, defaults: bool, lines: list[str]
) -> None:
    pad = "  " * depth
    if isinstance(value, ComponentSpec):
        entry = REGISTRIES[value.kind].get(value.type)
        lines.append(f"{pad}type: {value.type}  # {spec.where(path + '.type')}")
        _describe_fields(entry.config, value.params, path, depth, spec, defaults, lines)
    elif attrs.has(type(value)):
        given = {f.name: getattr(value, f.name) for f in attrs.fields(type(value))}
        set_keys = {k for k in given if _was_set(spec, f"{path}.{k}")}
        params = {k: v for k, v in given.items() if k in set_keys}
        _describe_fields(type(value), params, path, depth, spec, defaults, lines, given)
    else:
        lines.append(f"{pad}{_inline(value)}  # {spec.where(path)}")


def _describe_fields(
    cls: type,
    params: dict[str, Any],
    path: str,
    depth: int,
    spec: Spec,
    defaults: bool,
    lines: list[str],
    values: dict[str, Any] | None = None,
) -> None:
    pad = "  " * depth
    for field in attrs.fields(cls):
        key = f"{path}.{field.name}"
        if field.name in params:
            value, source = params[field.name], None
        elif defaults and not field.metadata.get("anchorage_injected"):
            value = values[field.name] if values else _default(field)
            source = "default"
        else:
            continue
        if isinstance(value, ComponentSpec) or (attrs.has(type(value)) and source is None):
            lines.append(f"{pad}{field.name}:")
            _describe_value(value, key, depth + 1, spec, defaults, lines)
        elif isinstance(value, tuple) and value and isinstance(value[0], ComponentSpec):
            lines.append(f"{pad}{field.name}:  # {spec.where(key)}")
            for item in value:
                lines.append(f"{pad}  - {_inline(to_plain(item))}")
        else:
            lines.append(f"{pad}{field.name}: {_inline(value)}  # {source or spec.where(key)}")


def _was_set(spec: Spec, path: str) -> bool:
    return any(k == path or k.startswith(path + ".") for k in spec.sources)


def _default(field: Any) -> Any:
    if isinstance(field.default, attrs.Factory):
        return field.default.factory()
    return None if field.default is attrs.NOTHING else field.default


def _inline(value: Any) -> str:
    text = yaml.safe_dump(to_plain(value), default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def describe_entry(entry: Entry) -> list[str]:
    """One header line (name, provider, module, the roles it fills, summary) and one line per
    parameter (type, default or 'required')."""
    roles = f"  (role: {', '.join(entry.roles)})" if entry.roles else ""
    out = [f"{entry.name}  [{entry.provider}: {entry.module}]{roles}  {entry.summary}".rstrip()]
    hints = typing.get_type_hints(entry.config)
    for field in attrs.fields(entry.config):
        if field.metadata.get("anchorage_injected"):
            continue
        kind = field.metadata.get("anchorage_component") or field.metadata.get(
            "anchorage_component_list"
        )
        shown = f"<{kind}>" if kind else _annotation(hints.get(field.name, Any))
        if field.default is attrs.NOTHING:
            default = "required"
        else:
            default = "default " + _inline(_default(field))
        out.append(f"    {field.name}: {shown} = {default}")
    return out


def _annotation(hint: Any) -> str:
    if typing.get_origin(hint) is None and isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")
