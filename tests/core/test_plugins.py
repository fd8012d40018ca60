"""Third-party plugins: an installed package registers components a spec then uses."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PLUGIN = '''
"""A third-party anchorage plugin living entirely outside anchorage."""
import attrs
import torch
from torch import nn

from anchorage.core import Matcher, component, hookimpl


class CenterMatcher(Matcher):
    """Matches nothing (stands for a researcher's new matcher)."""

    @attrs.frozen(kw_only=True)
    class Config:
        radius: float = 1.0

    def __init__(self, cfg):
        self.cfg = cfg

    def __call__(self, iou):
        return torch.full((iou.shape[0], iou.shape[2]), -1, dtype=torch.int64)


class ExtModel(nn.Module):
    """A model using whichever matcher the spec names."""

    @attrs.frozen(kw_only=True)
    class Config:
        matcher: object = component("matcher")

    def __init__(self, cfg):
        super().__init__()
        self.matcher = cfg.matcher.build()


@hookimpl
def anchorage_register(registries):
    registries["matcher"].register("center_matcher")(CenterMatcher)
    registries["model"].register("ext_model")(ExtModel)
'''


@pytest.fixture
def installed_plugin(tmp_path: Path) -> Path:
    """A plugin package 'installed' as a distribution with an entry point on sys.path."""
    site = tmp_path / "site"
    (site / "ext_plugin").mkdir(parents=True)
    (site / "ext_plugin" / "__init__.py").write_text(PLUGIN)
    dist = site / "ext_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ext-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[anchorage.plugins]\next = ext_plugin\n")
    spec = tmp_path / "ext.yaml"
    spec.write_text("model:\n  type: ext_model\n  matcher: {type: center_matcher, radius: 2}\n")
    return site


def run(args: list[str], site: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(site), **env}
    environ.pop("ANCHORAGE_DISABLE_PLUGIN_AUTOLOAD", None)
    environ.update(env)
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=environ, capture_output=True, text=True
    )


SCRIPT = textwrap.dedent(
    """
    import sys
    from anchorage.core import build_model, load_spec
    model = build_model(load_spec(sys.argv[1]))
    print(type(model.matcher).__name__, model.matcher.cfg.radius)
    """
)


@pytest.mark.slow
def test_entry_point_plugin_is_used_from_a_spec(installed_plugin: Path) -> None:
    spec = installed_plugin.parent / "ext.yaml"
    result = run(["-c", SCRIPT, str(spec)], installed_plugin)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["CenterMatcher", "2.0"]

    listing = run(["tools/list_components.py", "matcher"], installed_plugin)
    assert listing.returncode == 0, listing.stderr
    assert "center_matcher  [ext: ext_plugin]" in listing.stdout
    assert "radius: float = default 1.0" in listing.stdout


@pytest.mark.slow
def test_autoload_can_be_disabled(installed_plugin: Path) -> None:
    spec = installed_plugin.parent / "ext.yaml"
    result = run(
        ["tools/print_spec.py", str(spec)], installed_plugin, ANCHORAGE_DISABLE_PLUGIN_AUTOLOAD="1"
    )
    assert result.returncode == 2
    assert "unknown model 'ext_model'" in result.stderr
    assert "Traceback" not in result.stderr


def test_register_plugin_by_hand() -> None:
    import types

    from support.toys import ToyMatcher

    from anchorage.core import hookimpl, register_plugin
    from anchorage.core.plugins import unregister_plugin
    from anchorage.core.registry import MATCHERS

    module = types.ModuleType("hand_plugin")

    @hookimpl
    def anchorage_register(registries):  # noqa: ANN001 - pluggy hook signature
        registries["matcher"].register("hand_matcher")(ToyMatcher)

    module.anchorage_register = anchorage_register
    name = register_plugin(module, "hand")
    try:
        assert MATCHERS.get("hand_matcher").provider == "hand"
    finally:
        MATCHERS.unregister("hand_matcher")
        unregister_plugin(name)


def test_a_lookup_loads_no_plugin() -> None:
    """Registries fill at the named loading point only, never as a side effect of a lookup."""
    code = textwrap.dedent(
        """
        from anchorage.core.plugins import ensure_plugins_loaded
        from anchorage.core.registry import MODELS
        before = (len(MODELS.names()), "ssd" in MODELS)
        ensure_plugins_loaded()
        print(*before, len(MODELS.names()) > 0)
        """
    )
    env = {**os.environ, "ANCHORAGE_DISABLE_PLUGIN_AUTOLOAD": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "False", "True"]
