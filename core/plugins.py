"""Plugin discovery with pluggy.

One hook, ``anchorage_register(registries)``, registers a plugin's components; another,
``anchorage_sections(register)``, declares top-level spec sections (the core's ``data``,
``train`` and ``eval`` come in that way too, from ``CORE_SECTIONS``). anchorage's
own components (``anchorage.plugins``) register through it exactly like a third-party
package, which declares an entry point in the group ``anchorage.plugins``:

    # pyproject.toml of a third-party package
    [project.entry-points."anchorage.plugins"]
    my_matchers = "my_package.anchorage_plugin"

    # my_package/anchorage_plugin.py
    from anchorage.core import hookimpl

    @hookimpl
    def anchorage_register(registries):
        from . import matchers  # modules whose decorators register components

Plugins load at one named point, ``ensure_plugins_loaded()``: ``load_spec``, ``build_model``,
``build_component`` and ``check_entry`` call it, and so does a tool that lists or looks up
components without a spec. A registry lookup itself never loads anything.

Setting ``ANCHORAGE_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry points; the built-in plugin is
always loaded. ``register_plugin`` adds a plugin object by hand (tests, notebooks).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

import pluggy

from .errors import AnchorageError
from .registry import REGISTRIES, current_provider
from .sections import register_section

PROJECT = "anchorage"
ENTRY_POINT_GROUP = "anchorage.plugins"
DISABLE_ENV = "ANCHORAGE_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN = "anchorage.plugins"
CORE_SECTIONS = (
    "anchorage.core.data.section",
    "anchorage.core.evaluation.section",
    "anchorage.core.engine.config",
)
"""The core subsystems that declare a top-level spec section, loaded like a plugin: the spec
layer knows none of them, each says which section it validates (``anchorage_sections``)."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class HookSpecs:
    """The hooks a plugin may implement."""

    @hookspec
    def anchorage_register(self, registries: Mapping[str, Any]) -> None:
        """Register components into ``registries`` (kind → Registry).

        Called once per plugin by ``ensure_plugins_loaded``. Import the modules whose
        ``@REGISTRY.register(name)`` decorators define the components, or call
        ``registries["matcher"].register("name")(cls)`` directly.
        """

    @hookspec
    def anchorage_sections(self, register: Any) -> None:
        """Declare top-level spec sections: ``register(name, schema, doc=...)`` with an attrs
        class validating the section (``register_section``'s signature)."""


_manager: pluggy.PluginManager | None = None
_loaded = False
_lock = threading.RLock()


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (created on first use)."""
    global _manager
    if _manager is None:
        _manager = pluggy.PluginManager(PROJECT)
        _manager.add_hookspecs(HookSpecs)
    return _manager


def ensure_plugins_loaded() -> None:
    """Load the built-in plugin and (unless disabled) entry-point plugins, once."""
    global _loaded
    with _lock:
        if _loaded:
            return
        _loaded = True
        import importlib

        pm = plugin_manager()
        for name in (*CORE_SECTIONS, BUILTIN):
            if pm.get_plugin(name) is None:
                pm.register(importlib.import_module(name), name=name)
        if os.environ.get(DISABLE_ENV, "") not in ("1", "true", "yes"):
            _load_entry_points(pm)
        for name, plugin in pm.list_name_plugin():
            _call_register(pm, name, plugin)


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin object (module or instance with hookimpls) and run its hook."""
    ensure_plugins_loaded()
    pm = plugin_manager()
    registered = pm.register(plugin, name=name)
    if registered is None:
        raise AnchorageError(f"plugin {name or plugin!r} is already registered")
    _call_register(pm, registered, plugin)
    return registered


def unregister_plugin(name: str) -> None:
    """Forget a plugin object; its registry entries stay (see Registry.unregister)."""
    plugin_manager().unregister(name=name)


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            raise AnchorageError(
                f"plugin {ep.name!r} (entry point {ep.value!r} in group "
                f"{ENTRY_POINT_GROUP!r}) failed to import: {type(exc).__name__}: {exc}; "
                f"set {DISABLE_ENV}=1 to start without third-party plugins"
            ) from exc
        pm.register(plugin, name=ep.name)


def _call_register(pm: pluggy.PluginManager, name: str, plugin: object) -> None:
    sections = getattr(plugin, "anchorage_sections", None)
    if sections is not None:
        sections(register=register_section)
    impl = getattr(plugin, "anchorage_register", None)
    if impl is None:
        return
    provider = "anchorage" if name == BUILTIN else name
    token = current_provider.set(provider)
    try:
        impl(registries=REGISTRIES)
    finally:
        current_provider.reset(token)
