"""anchorage's built-in components, registered through the same pluggy hook as any plugin.

Every module below this package is imported when the registries are first used; each
module's ``@REGISTRY.register(name)`` decorators add its components.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from anchorage.core.plugins import hookimpl


@hookimpl
def anchorage_register(registries: Mapping[str, Any]) -> None:
    """Import every built-in component module (their decorators register them)."""
    for info in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
        importlib.import_module(info.name)
