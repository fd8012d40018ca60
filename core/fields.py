"""Field helpers of component configs: nested components, lists of them, injected values.

They only tag attrs fields with metadata that ``core.config`` reads when it validates a spec;
this module imports nothing of anchorage, so interfaces can declare config bases with them.
"""

from __future__ import annotations

from typing import Any

import attrs

_COMPONENT = "anchorage_component"
_COMPONENT_LIST = "anchorage_component_list"
_INJECTED = "anchorage_injected"
_ROLE = "anchorage_role"


def component(kind: str, *, optional: bool = False, role: str | None = None, **kwargs: Any) -> Any:
    """An attrs field holding a nested component of ``kind`` (a ``ComponentSpec``).

    ``optional=True`` makes it default to None (the spec may leave it out or set null).
    ``role`` restricts the slot to components implementing that role's interface.
    """
    if optional:
        kwargs.setdefault("default", None)
    return attrs.field(metadata={_COMPONENT: kind, _ROLE: role}, **kwargs)


def component_list(kind: str, *, role: str | None = None, **kwargs: Any) -> Any:
    """An attrs field holding a list of components of ``kind`` (default: empty)."""
    kwargs.setdefault("factory", tuple)
    return attrs.field(metadata={_COMPONENT_LIST: kind, _ROLE: role}, **kwargs)


def injected(**kwargs: Any) -> Any:
    """An attrs field the parent component supplies at build time, never the spec."""
    return attrs.field(metadata={_INJECTED: True}, **kwargs)


def is_injected(field: attrs.Attribute) -> bool:
    """Whether ``field`` was declared with ``injected()``."""
    return bool(field.metadata.get(_INJECTED))
