"""Every registered component, through the conformance kit of its kind."""

from __future__ import annotations

import pytest

from anchorage.core.registry import REGISTRIES
from anchorage.core.testing import check_entry

ENTRIES = [(kind, entry.name) for kind, registry in REGISTRIES.items() for entry in registry]


@pytest.mark.parametrize(("kind", "name"), ENTRIES, ids=[f"{k}:{n}" for k, n in ENTRIES])
def test_registered_component_conforms(kind: str, name: str) -> None:
    check_entry(kind, name)


def test_every_kind_has_components() -> None:
    empty = [kind for kind, registry in REGISTRIES.items() if not registry.names()]
    assert not empty, f"kinds without any registered component: {empty}"
