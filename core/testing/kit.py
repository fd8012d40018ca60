"""The kit's machinery: the check tables, building entries from their examples, ``check_entry``.

anchorage's suite runs ``check_entry`` over every registry entry; a plugin author runs it
on theirs::

    from anchorage.core.testing import check_entry
    def test_my_matcher():
        check_entry("matcher", "my_matcher")

Each registered entry is built from its ``examples`` (parameter mappings given at
registration; ``({},)`` when none) and handed to the check for its kind, then to the check of
each role it implements (``role_check``: heads, losses and postprocessors are checked against
the signature of their role, with inputs built from their config). Kinds without a
behavioural check here are checked for building and finite parameters; their own tests
cover behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import torch
from torch import nn

from ..fields import is_injected
from ..plugins import ensure_plugins_loaded
from ..registry import EmptyConfig, Entry, registry_for

CHECKS: dict[str, Callable[[Any], None]] = {}
ROLE_CHECKS: dict[str, Callable[[Any, Any], None]] = {}


def conformance_check(kind: str) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    """Register the behavioural check for components of ``kind``."""

    def decorator(fn: Callable[[Any], None]) -> Callable[[Any], None]:
        CHECKS[kind] = fn
        return fn

    return decorator


def role_check(role: str) -> Callable[[Callable[[Any, Any], None]], Callable[[Any, Any], None]]:
    """Register the check of components implementing ``role``: ``check(component, config)``.

    ``config`` is the validated config the component was built from (injected fields such
    as ``in_channels`` or ``num_classes`` included), so the check can size its inputs.
    """

    def decorator(fn: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
        ROLE_CHECKS[role] = fn
        return fn

    return decorator


def register_checks(
    *,
    kinds: dict[str, Callable[[Any], None]] | None = None,
    roles: dict[str, Callable[[Any, Any], None]] | None = None,
) -> None:
    """Register a module's tables of checks: registry kind → ``check(component)``, role →
    ``check(component, config)``."""
    for kind, check in (kinds or {}).items():
        conformance_check(kind)(check)
    for role, check in (roles or {}).items():
        role_check(role)(check)


def build_example_configs(entry: Entry) -> list[tuple[Any, Any]]:
    """``(config, component)`` for each of ``entry``'s examples (defaults when it has none).

    A component that declares no ``Config`` but is given parameters, or whose factory does not
    take the one config argument, fails with a one-line message saying so.
    """
    out = []
    for params in entry.examples or ({},):
        what = f"{entry.kind} {entry.name!r}"
        params = {**kit_injections(entry), **params}
        try:
            config = entry.config(**params)
        except TypeError as exc:
            if entry.config is not EmptyConfig:
                raise
            raise AssertionError(
                f"{what} declares no Config (a frozen attrs class) but its example sets "
                f"{sorted(params)}: {exc}"
            ) from None
        try:
            obj = entry.factory(config)
        except TypeError as exc:
            if entry.config is not EmptyConfig:
                raise
            raise AssertionError(
                f"{what} declares no Config and cannot be built with one (factory(config)); "
                f"declare a frozen attrs Config and take it in __init__: {exc}"
            ) from None
        out.append((config, obj))
    return out


def kit_injections(entry: Entry) -> dict[str, Any]:
    """What the kit injects where a parent would: an injected ``box_coder`` field without a
    default gets the coder the component declares (``kit_box_coder``, a registered coder's
    spec), as a skeleton injects its own."""
    if not attrs.has(entry.config):
        return {}
    field = attrs.fields_dict(entry.config).get("box_coder")
    if field is None or field.default is not attrs.NOTHING or not is_injected(field):
        return {}
    coder = dict(getattr(entry.factory, "kit_box_coder", {"type": "delta_xywh"}))
    return {"box_coder": registry_for("box_coder").get(coder.pop("type")).build(**coder)}


def build_examples(entry: Entry) -> list[Any]:
    """Build ``entry`` from each of its examples (or from defaults when it has none)."""
    return [obj for _, obj in build_example_configs(entry)]


def check_entry(kind: str, name: str) -> None:
    """Build registry entry ``kind``/``name`` from its examples and run the kind's checks,
    then the checks of every role it implements."""
    ensure_plugins_loaded()
    entry = registry_for(kind).get(name)
    for config, obj in build_example_configs(entry):
        if isinstance(obj, nn.Module):
            check_finite_parameters(obj)
        check = CHECKS.get(kind)
        if check is not None:
            check(obj)
        for role in entry.roles:
            role_checker = ROLE_CHECKS.get(role)
            if role_checker is not None:
                role_checker(obj, config)


def check_finite_parameters(module: nn.Module) -> None:
    """Every parameter and buffer of ``module`` is finite."""
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        if t.is_floating_point():
            assert torch.isfinite(t).all(), f"{name} has non-finite values"
