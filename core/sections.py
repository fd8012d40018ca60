"""The top-level spec sections: their table, and the core's own sections declared explicitly.

A section is validated by an attrs class (``data``, ``train``, ``eval``) or as one registered
component (``model``). The subsystems define their section classes without knowing the spec
loader; this module lists them, so ``spec`` imports the table and nothing imports ``spec``
back. A plugin declares its own section with ``register_section`` from its registration hook
or its module (e.g. ``style_transfer``).
"""

from __future__ import annotations

import attrs

from .data.section import DataSection
from .engine.config import TrainConfig
from .errors import SpecError
from .evaluation.section import EvalSection


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
register_section("data", DataSection, doc="datasets, transforms and loaders per split")
register_section("train", TrainConfig, doc="training loop: optimizer, schedule, AMP, intervals")
register_section("eval", EvalSection, doc="metrics and the split they are computed on")
