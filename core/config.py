"""Declared component configs and their validation against plain spec data.

A component declares its parameters as a frozen attrs class. Field annotations give the
type (checked), attrs validators give ranges (run), and two field helpers mark fields that
are not plain values:

- ``component("matcher")``: a nested component, given in the spec as a mapping with a
  ``type`` key; validated recursively and handed to the parent as a ``ComponentSpec`` that the
  parent builds (``cfg.matcher.build()``). ``component_list`` is the list form.
- ``injected()``: a value the parent passes at build time (channels from ``feature_info``, the
  number of classes); a spec may not set it.

A component field may name the *role* its slot takes (``component("loss", role="dense_loss")``):
a role is an interface class with a ``role`` class attribute (``core.interfaces``), and a
component of the right kind but another role (an R-CNN loss in a dense detector's loss slot) is
refused at validation, before anything is built.

Validation turns nested plain data into checked values without building anything, so every
error in a spec is reported before a single tensor is allocated. The field helpers live in
``core.fields`` (which imports nothing of anchorage, so interfaces may use them) and are
re-exported here.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .errors import SpecError
from .fields import _COMPONENT, _COMPONENT_LIST, _INJECTED, _ROLE
from .fields import component as component  # re-exported: the config API in one place
from .fields import component_list as component_list
from .fields import injected as injected

Where = Callable[[str], str]
"""Maps a key path to a description of where it was set ("file.yaml" or "--set")."""


@attrs.frozen(kw_only=True)
class ComponentSpec:
    """A validated, not yet built component: registry kind, type name and parameters.

    ``params`` holds checked values; nested components stay ``ComponentSpec``.
    """

    kind: str
    type: str
    params: Mapping[str, Any]
    path: str

    def build(self, **injected_params: Any) -> Any:
        """Build the component; ``injected_params`` fill its injected fields."""
        from .registry import registry_for

        entry = registry_for(self.kind).get(self.type)
        names = {f.name for f in attrs.fields(entry.config)}
        unknown = sorted(set(injected_params) - names)
        if unknown:
            raise SpecError(
                f"{self.path}: {self.kind} {self.type!r} does not accept {unknown} "
                f"(accepted: {sorted(names)}); the parent component passes parameters that "
                "this one does not declare"
            )
        try:
            cfg = entry.config(**self.params, **injected_params)
        except ValueError as exc:  # a cross-field check of the config (e.g. low > high)
            raise SpecError(f"{self.path}: {exc}") from None
        return entry.factory(cfg)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``type`` + parameters), as it would be written in a spec."""
        return {"type": self.type, **{k: to_plain(v) for k, v in self.params.items()}}


def to_plain(value: Any) -> Any:
    """Validated values back to plain YAML-able data."""
    if isinstance(value, ComponentSpec):
        return value.to_dict()
    if attrs.has(type(value)):
        return {f.name: to_plain(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def validate_component(
    kind: str, data: Any, path: str, where: Where, role: str | None = None
) -> ComponentSpec:
    """Check ``data`` (a mapping with ``type``) against the registered component's config.

    With ``role``, the named component must implement that role (see ``Entry.roles``).
    """
    from .registry import registry_for

    registry = registry_for(kind)
    if not isinstance(data, Mapping):
        raise _error(path, where, f"a {kind} (a mapping with a 'type' key)", data)
    if "type" not in data:
        raise SpecError(
            f"{where(path)}: {path}: a {kind} needs a 'type' key naming a registered {kind}; "
            f"got keys {sorted(data)}"
        )
    name = data["type"]
    if not isinstance(name, str) or name not in registry:
        raise SpecError(f"{where(path + '.type')}: {path}.type: {registry.unknown_message(name)}")
    entry = registry.get(name)
    if role is not None and role not in entry.roles:
        raise SpecError(
            f"{where(path + '.type')}: {path}.type: {_role_message(registry, entry, role)}"
        )
    params = {k: v for k, v in data.items() if k != "type"}
    checked = validate_fields(entry.config, params, path, where, f"{kind} {name!r}")
    return ComponentSpec(kind=kind, type=name, params=checked, path=path)


def _role_message(registry: Any, entry: Any, role: str) -> str:
    fitting = [e.name for e in registry if role in e.roles]
    has = " / ".join(entry.roles) if entry.roles else "a component without a role"
    return f"this slot takes a {role}, but {kind_name(entry)} is {has}; {role} components: " + (
        ", ".join(fitting) if fitting else "(none registered)"
    )


def kind_name(entry: Any) -> str:
    """``"loss 'multibox'"``: an entry's kind and name, for messages."""
    return f"{entry.kind} {entry.name!r}"


def validate_fields(
    cls: type, data: Mapping[str, Any], path: str, where: Where, what: str
) -> dict[str, Any]:
    """Check a mapping against the fields of attrs class ``cls``; return checked values.

    Missing required fields, unknown keys, injected keys, wrong types and failed attrs
    validators are errors naming the full key path. Defaults are not filled in.
    """
    fields = {f.name: f for f in attrs.fields(cls)}
    settable = sorted(n for n, f in fields.items() if not f.metadata.get(_INJECTED))
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        field = fields.get(key)
        if field is None:
            close = difflib.get_close_matches(str(key), settable, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpecError(
                f"{where(key_path)}: {key_path}: unknown parameter {key!r} of {what}{hint}; "
                f"accepted parameters: {', '.join(settable) or '(none)'}"
            )
        if field.metadata.get(_INJECTED):
            raise SpecError(
                f"{where(key_path)}: {key_path}: {key!r} of {what} is set by its parent "
                "component (e.g. from the backbone's feature_info); remove it from the spec"
            )
        out[key] = _validate_field(field, hints.get(key, Any), value, key_path, where)
    for name, field in fields.items():
        if name in data or field.metadata.get(_INJECTED):
            continue
        if field.default is attrs.NOTHING:
            key_path = f"{path}.{name}" if path else name
            raise SpecError(
                f"{where(path)}: {key_path}: missing required parameter {name!r} of {what} "
                f"(expected {_type_name(hints.get(name, Any))})"
            )
    return out


def validate_section(cls: type, data: Any, path: str, where: Where) -> Any:
    """Check plain data against a (non-component) attrs section class; return an instance."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise _error(path, where, f"a mapping ({cls.__name__})", data)
    return cls(**validate_fields(cls, data, path, where, f"section {path!r}"))


def as_section(cls: type, value: Any, path: str) -> Any:
    """A nested section given as plain data (Python callers, registry examples) → a validated
    ``cls`` instance; an instance or None passes through (specs arrive validated)."""
    if value is None or isinstance(value, cls):
        return value
    return validate_section(cls, value, path, lambda _p: "<python>")


def _validate_field(field: Any, hint: Any, value: Any, path: str, where: Where) -> Any:
    kind = field.metadata.get(_COMPONENT)
    role = field.metadata.get(_ROLE)
    if kind is not None:
        if value is None and field.default is None:
            return None
        return validate_component(kind, value, path, where, role)
    kind = field.metadata.get(_COMPONENT_LIST)
    if kind is not None:
        if not isinstance(value, (list, tuple)):
            raise _error(path, where, f"a list of {kind} mappings", value)
        return tuple(
            validate_component(kind, v, f"{path}[{i}]", where, role) for i, v in enumerate(value)
        )
    checked = check_type(value, hint, path, where)
    if field.validator is not None:
        try:
            field.validator(None, field, checked)
        except (TypeError, ValueError) as exc:
            # attrs validators put the readable message first in args
            message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
            raise SpecError(f"{where(path)}: {path}: {message}") from None
    return checked


def check_type(value: Any, hint: Any, path: str, where: Where) -> Any:
    """Check ``value`` against a type annotation; return it (lists become tuples).

    Supports Any, None, bool, int, float (ints accepted), str, Literal, unions/Optional,
    list[...] / tuple[X, ...] / tuple[X, Y] (both as tuples), dict[str, X] and attrs classes.
    """
    if hint is Any or hint is object:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return _check_union(value, hint, args, path, where)
    if origin is typing.Literal:
        if value in args:
            return value
        raise _error(path, where, "one of " + ", ".join(repr(a) for a in args), value)
    if hint is type(None):
        if value is None:
            return None
        raise _error(path, where, "null", value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _error(path, where, "a boolean (true/false)", value)
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _error(path, where, "an integer", value)
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _error(path, where, "a number", value)
    if hint is str:
        if isinstance(value, str):
            return value
        raise _error(path, where, "a string", value)
    if origin in (list, tuple, typing.Sequence) or hint in (list, tuple):
        return _check_sequence(value, hint, origin, args, path, where)
    if origin in (dict, typing.Mapping, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise _error(path, where, _type_name(hint), value)
        vt = args[1] if len(args) == 2 else Any
        return {k: check_type(v, vt, f"{path}.{k}", where) for k, v in value.items()}
    if isinstance(hint, type) and attrs.has(hint):
        return validate_section(hint, value, path, where)
    if isinstance(hint, type):
        if isinstance(value, hint):
            return value
        raise _error(path, where, _type_name(hint), value)
    return value


def _check_union(value: Any, hint: Any, args: tuple, path: str, where: Where) -> Any:
    """The first option ``value`` passes; else the error of the one option its shape fits.

    A mapping given for ``SomeSection | None`` (or a list for ``tuple[Section, ...] | None``)
    is checked against that option alone, so a mistake deep inside it is reported with its own
    key path (and did-you-mean) instead of "expected SomeSection | None" at the parent.
    """
    errors: list[tuple[Any, SpecError]] = []
    for option in args:
        try:
            return check_type(value, option, path, where)
        except SpecError as exc:
            errors.append((option, exc))
    fitting = [exc for option, exc in errors if _shape_fits(value, option)]
    if len(fitting) == 1:
        raise fitting[0]
    raise _error(path, where, _type_name(hint), value)


def _shape_fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` has the container shape of ``hint`` (mapping ↔ section, list ↔ list)."""
    origin = typing.get_origin(hint)
    if isinstance(value, Mapping):
        return (
            (isinstance(hint, type) and attrs.has(hint))
            or origin in (dict, Mapping)
            or (origin is typing.Mapping)
        )
    if isinstance(value, (list, tuple)):
        return origin in (list, tuple, typing.Sequence)
    return False


def _check_sequence(
    value: Any, hint: Any, origin: Any, args: tuple, path: str, where: Where
) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise _error(path, where, _type_name(hint), value)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise _error(path, where, f"{_type_name(hint)} ({len(args)} items)", value)
        return tuple(
            check_type(v, a, f"{path}[{i}]", where) for i, (v, a) in enumerate(zip(value, args))
        )
    item = args[0] if args else Any
    return tuple(check_type(v, item, f"{path}[{i}]", where) for i, v in enumerate(value))


def _type_name(hint: Any) -> str:
    if hint is Any:
        return "any value"
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " | ".join(_short_name(a) for a in typing.get_args(hint))
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return {
            "int": "an integer",
            "float": "a number",
            "str": "a string",
            "bool": "a boolean",
        }.get(hint.__name__, hint.__name__)
    return str(hint).replace("typing.", "")


def _short_name(hint: Any) -> str:
    """A union member as written in an annotation: ``None``, ``int``, ``RPNConfig``."""
    if hint is type(None):
        return "None"
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return hint.__name__
    return str(hint).replace("typing.", "")


def _error(path: str, where: Where, expected: str, got: Any) -> SpecError:
    shown = repr(got)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return SpecError(
        f"{where(path)}: {path}: expected {expected}, got {shown} ({type(got).__name__})"
    )
