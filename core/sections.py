"""The table of top-level spec sections and ``register_section``.

A section is validated by an attrs class (``data``, ``train``, ``eval``) or as one registered
component (``model``, declared here). The spec layer imports no subsystem: each one that owns
a section declares it through the ``anchorage_sections`` plugin hook (``core/plugins.py``
loads the core's own ``data``, ``train`` and ``eval`` providers like plugins), or a plugin
calls ``register_section`` from its module (e.g. ``style_transfer``).
"""

from __future__ import annotations

import attrs

from .errors import SpecError


@attrs.frozen
class Section:
    """A top-level spec section: its attrs class, or a registry kind for a component."""

    name: str
    schema: type | None = None
    component_kind: str | None = None
    doc: str = ""


SECTIONS: dict[str, Section] = {}


def register_section(
    name: str, schema: type | None = None, *, component_kind: str | None = None, doc: str = ""
) -> None:
    """Declare a top-level section validated by ``schema`` (attrs) or as a component."""
    if (schema is None) == (component_kind is None):
        raise ValueError("give exactly one of schema and component_kind")
    old = SECTIONS.get(name)
    if old is not None and (old.schema, old.component_kind) != (schema, component_kind):
        raise SpecError(f"section {name!r} is declared twice ({old.schema} and {schema})")
    SECTIONS[name] = Section(name, schema, component_kind, doc)


register_section("model", component_kind="model", doc="the pipeline to build")
