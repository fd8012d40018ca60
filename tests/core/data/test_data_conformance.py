"""Every registered dataset, transform and metric passes its kind's conformance check."""

from __future__ import annotations

import pytest

from anchorage.core.registry import REGISTRIES
from anchorage.core.testing import CHECKS, check_entry

ENTRIES = [(k, e.name) for k in ("dataset", "transform", "metric") for e in REGISTRIES[k]]


@pytest.mark.parametrize(("kind", "name"), ENTRIES)
def test_entry_conforms(kind, name):
    assert kind in CHECKS
    check_entry(kind, name)
