"""Every registered component, through the conformance kit of its kind."""

from __future__ import annotations

import pytest

from anchorage.core.registry import REGISTRIES
from anchorage.core.testing import ROLE_CHECKS, check_entry

ENTRIES = [(kind, entry.name) for kind, registry in REGISTRIES.items() for entry in registry]


@pytest.mark.parametrize(("kind", "name"), ENTRIES, ids=[f"{k}:{n}" for k, n in ENTRIES])
def test_registered_component_conforms(kind: str, name: str) -> None:
    check_entry(kind, name)


def test_every_kind_has_components() -> None:
    empty = [kind for kind, registry in REGISTRIES.items() if not registry.names()]
    assert not empty, f"kinds without any registered component: {empty}"


def test_every_registered_role_has_a_check() -> None:
    """``check_entry`` runs a role check for every role a registered component implements."""
    roles = {role for registry in REGISTRIES.values() for entry in registry for role in entry.roles}
    assert {"dense_head", "dense_loss", "box_loss", "dense_postprocessor"} <= roles
    assert not roles - ROLE_CHECKS.keys(), sorted(roles - ROLE_CHECKS.keys())
