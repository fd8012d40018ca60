"""Spec files: safe YAML, ``_base_`` inheritance, ``--set`` overrides, validation.

A spec is a YAML mapping of sections (``model``, ``data``, ``train``, ``eval``, ...). Each
component is a mapping whose ``type`` names a registered component. ``load_spec`` reads the
file and its bases, applies overrides, remembers which file or override set every value,
and validates every section before anything is built.

Merging rules: mappings merge key by key, except that a mapping whose ``type`` differs from
the base's replaces it (so switching a component does not inherit the old one's
parameters); lists and scalars replace. ``--set a.b.type=name`` follows the same rule.
"""

from __future__ import annotations

import copy
import os
import re
import stat
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .config import ComponentSpec, check_type, to_plain, validate_component, validate_section
from .errors import SpecError
from .plugins import ensure_plugins_loaded
from .sections import SECTIONS, Section, register_section

BASE_KEY = "_base_"
SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"
"""The spec zoo shipped with anchorage (``specs/`` in the source tree and installed package)."""


MAX_YAML_NODES = 200_000
"""Most nodes a spec (or ``--set`` value) may expand to once YAML aliases are followed."""
MAX_YAML_BYTES = 16 * 2**20
"""Most scalar text (bytes) a spec may expand to once YAML aliases are followed."""
MAX_YAML_DEPTH = 100
"""Deepest nesting of mappings and lists a spec may use."""
INT64 = (-(2**63), 2**63 - 1)

# YAML 1.1 needs a dot in a float (``1.0e-4``); ``1e-4`` and ``1E5`` would stay strings. This
# resolver (added after the 1.1 ones, so ints and dotted floats resolve as before) reads them.
_EXPONENT_FLOAT = r"^[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)[eE][-+]?[0-9]+$"


class _SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader that also refuses duplicate and unhashable keys and integers
    outside int64, and reads ``1e-4`` as a float."""


def _construct_mapping(loader: _SafeLoader, node: yaml.MappingNode) -> dict:
    loader.flatten_mapping(node)
    out: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        mark = key_node.start_mark
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(
                None, None, f"a mapping key must be a scalar, got a {type(key).__name__}", mark
            )
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
    return out


def _construct_int(loader: _SafeLoader, node: yaml.ScalarNode) -> int:
    value = yaml.SafeLoader.construct_yaml_int(loader, node)
    if not INT64[0] <= value <= INT64[1]:
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"integer {node.value} is out of range (it must fit in 64 bits)",
            node.start_mark,
        )
    return value


_SafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_SafeLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(_EXPONENT_FLOAT), list("-+.0123456789")
)


def check_yaml_size(text: str) -> str | None:
    """Why ``text`` is too big to load (nesting depth, nodes or bytes after alias expansion),
    or None. Reads the event stream only (no recursion, nothing expanded): an alias counts the
    size of what it refers to, so a "billion laughs" is caught before it is built. Syntax
    errors are left to the loader, which reports them with their position."""
    anchors: dict[str, tuple[int, int]] = {}
    stack: list[list] = [[0, 0, None]]  # per open collection: nodes, bytes, anchor
    try:
        for event in yaml.parse(text, Loader=_SafeLoader):  # noqa: S506 - events only
            if isinstance(event, yaml.CollectionStartEvent):
                stack.append([1, 0, event.anchor])
                if len(stack) - 1 > MAX_YAML_DEPTH:
                    return f"is nested deeper than {MAX_YAML_DEPTH} levels"
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                nodes, size, anchor = stack.pop()
            elif isinstance(event, yaml.ScalarEvent):
                nodes, size, anchor = 1, len(event.value), event.anchor
            elif isinstance(event, yaml.AliasEvent):
                (nodes, size), anchor = anchors.get(event.anchor, (1, 0)), None
            else:
                continue
            if anchor is not None:
                anchors[anchor] = (nodes, size)
            top = stack[-1]
            top[0] += nodes
            top[1] += size
            if top[0] > MAX_YAML_NODES or top[1] > MAX_YAML_BYTES:
                return (
                    f"expands to more than {MAX_YAML_NODES} nodes or {MAX_YAML_BYTES} bytes "
                    "once its aliases (*name) are followed"
                )
    except yaml.YAMLError:
        return None
    return None


def load_yaml_text(text: str, source: str, malformed: str = "malformed YAML") -> Any:
    """Parse YAML ``text`` with the safe loader after the size check; ``SpecError`` naming
    ``source`` (and line and column) when it is too big or malformed."""
    too_big = check_yaml_size(text)
    if too_big:
        raise SpecError(f"{source}: refused: the YAML {too_big}")
    try:
        return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = exc.problem or str(exc)
        if "could not determine a constructor" in problem or "python/" in problem:
            problem += " (specs are loaded with a safe YAML loader: no Python tags)"
        raise SpecError(f"{where}: {malformed}: {problem}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: {malformed}: {exc}") from None
    except RecursionError:
        raise SpecError(f"{source}: refused: the YAML is nested too deeply") from None


def read_yaml(path: Path) -> Any:
    """Parse one YAML file with the safe loader; errors name the file, line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: spec file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read spec file: {exc}") from None
    return load_yaml_text(text, str(path))


def resolve_spec_path(path: str | Path, relative_to: Path | None = None) -> Path:
    """Find a spec: as given, relative to ``relative_to``, or in the shipped zoo; a name
    without a suffix (``tiny_ssd_shapes``) also tries ``.yaml``, as the tools do."""
    p = Path(path)
    candidates = [p] if p.is_absolute() else []
    if not p.is_absolute():
        if relative_to is not None:
            candidates.append(relative_to / p)
        candidates += [Path.cwd() / p, SPECS_DIR / p, SPECS_DIR / p.name]
    if not p.suffix:
        candidates += [c.with_name(c.name + ".yaml") for c in list(candidates)]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    # not a spec file anywhere: the first that exists in some form (a folder, a FIFO, a
    # symlink loop) so the error can say what it is; absolute, links not followed
    there = [c for c in candidates if os.path.lexists(c)]
    return Path(os.path.abspath(there[0] if there else candidates[0] if candidates else p))


def not_a_spec_file(path: Path) -> str:
    """Why ``path`` (not a regular file) cannot be read as a spec, in a few words."""
    chain = [path]
    while chain[-1].is_symlink():
        target = Path(os.readlink(chain[-1]))
        target = target if target.is_absolute() else chain[-1].parent / target
        target = Path(os.path.normpath(target))
        if target in chain or len(chain) > 40:
            loop = " -> ".join(str(p) for p in (*chain, target))
            return f"symlink loop: {loop}"
        chain.append(target)
    links = " -> ".join(str(p) for p in chain)
    try:
        mode = chain[-1].stat().st_mode
    except FileNotFoundError:
        return (
            f"broken symlink: {links} does not exist" if len(chain) > 1 else "spec file not found"
        )
    except OSError as exc:
        return f"cannot read spec file: {exc.strerror}"
    for test, what in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            via = f" ({links})" if len(chain) > 1 else ""
            return f"exists but is {what}{via}, not a spec file"
    return "not a regular file"


class Spec:
    """A resolved, validated spec.

    ``data``: merged plain data; ``sources``: key path → file or override that set it;
    ``sections``: validated values (``model`` is a ComponentSpec, others attrs instances).
    """

    def __init__(self, data: dict, sources: dict[str, str], path: str | None) -> None:
        self.data = data
        self.sources = sources
        self.path = path
        self.sections = _validate(data, self.where)

    @property
    def model(self) -> ComponentSpec:
        """The validated ``model`` component."""
        return self.section("model")

    def section(self, name: str) -> Any:
        """A validated section; an error naming the spec when it is absent."""
        if name not in self.sections:
            raise SpecError(
                f"{self.path or 'spec'}: needs a top-level {name!r} section "
                f"(it has: {', '.join(self.sections) or 'none'})"
            )
        return self.sections[name]

    def get(self, name: str, default: Any = None) -> Any:
        """A validated section, or ``default`` when the spec has none."""
        return self.sections.get(name, default)

    def where(self, key_path: str) -> str:
        """The file or override that set ``key_path`` (or the nearest enclosing key).

        List items are written ``a.b[1].c`` in messages and ``a.b.1.c`` by ``--set``.
        """
        path = re.sub(r"\[(\d+)\]", r".\1", key_path)
        while path:
            if path in self.sources:
                return self.sources[path]
            prefix = path + "."
            for k, v in self.sources.items():
                if k.startswith(prefix) or k.startswith(path + "["):
                    return v
            path = path.rpartition("[")[0] if path.endswith("]") else path.rpartition(".")[0]
        return self.path or "spec"

    def to_dict(self) -> dict:
        """The merged spec as plain data (what a checkpoint stores)."""
        return copy.deepcopy(self.data)

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "<dict>") -> Spec:
        """Validate plain data (e.g. the spec stored in a checkpoint)."""
        data = copy.deepcopy(dict(data))
        return cls(data, {k: source for k in _leaf_paths(data)}, source)


def load_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Spec:
    """Read ``path`` and its ``_base_`` files, apply ``key.path=value`` overrides, validate."""
    file = resolve_spec_path(path)
    data, sources = _load_with_bases(file, ())
    for item in overrides:
        _apply_override(data, sources, item)
    return Spec(data, sources, str(file))


def parse_override(item: str) -> tuple[list[str | int], Any]:
    """``"a.b.c=value"`` → (["a", "b", "c"], parsed YAML value)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise SpecError(f"--set {item}: expected KEY.PATH=VALUE, e.g. model.num_classes=3")
    source = f"--set {item}"
    value = load_yaml_text(raw, source, "the value is not valid YAML") if raw.strip() else ""
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in key.split(".")]
    return parts, value


def _apply_override(data: dict, sources: dict[str, str], item: str) -> None:
    parts, value = parse_override(item)
    source = f"--set {item}"
    node: Any = data
    walked = ""
    for part in parts[:-1]:
        here = _join(walked, part)
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            keys = ", ".join(map(str, node)) if isinstance(node, Mapping) else type(node).__name__
            raise SpecError(
                f"{source}: {here} does not exist (under {walked or 'the top level'}: {keys}); "
                "--set changes existing keys and parameters, it never adds sections"
            )
        walked = here
    last = parts[-1]
    full = _join(walked, last)
    if isinstance(node, list) and isinstance(last, int) and last < len(node):
        node[last] = value
    elif isinstance(node, dict) and not isinstance(last, int):
        if last == "type" and node.get("type") not in (None, value):
            node.clear()
            for k in [k for k in sources if k.startswith(walked + ".")]:
                del sources[k]
        elif not walked and last not in node:
            raise SpecError(f"{source}: no top-level section {last!r} in the spec")
        node[last] = value
    else:
        raise SpecError(f"{source}: {full} cannot be set ({walked or 'top'} is not a mapping)")
    for k in [k for k in sources if k == full or k.startswith(full + ".")]:
        del sources[k]
    for leaf in _leaf_paths(value, full):
        sources[leaf] = source


def _load_with_bases(file: Path, chain: tuple[Path, ...]) -> tuple[dict, dict[str, str]]:
    if file in chain:
        cycle = " -> ".join(str(p) for p in (*chain, file))
        raise SpecError(f"{file}: cycle in {BASE_KEY}: {cycle}")
    if not file.is_file():
        parent = f" (named in {BASE_KEY} of {chain[-1]})" if chain else ""
        raise SpecError(f"{file}: {not_a_spec_file(file)}{parent}")
    raw = read_yaml(file)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(f"{file}: a spec is a mapping of sections, got {type(raw).__name__}")
    bases = raw.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise SpecError(f"{file}: {BASE_KEY}: expected a file name or a list of them")
    data: dict = {}
    sources: dict[str, str] = {}
    for base in bases:
        base_file = resolve_spec_path(base, file.parent)
        base_data, base_sources = _load_with_bases(base_file, (*chain, file))
        _merge(data, sources, base_data, base_sources, "")
    _merge(data, sources, raw, {p: str(file) for p in _leaf_paths(raw)}, "")
    return data, sources


def _merge(dst: dict, dst_src: dict, src: Mapping, src_src: Mapping, prefix: str) -> None:
    for key, value in src.items():
        path = _join(prefix, key)
        old = dst.get(key)
        replace = not (isinstance(old, dict) and isinstance(value, Mapping)) or (
            "type" in value and old.get("type") not in (None, value["type"])
        )
        if replace:
            for k in [k for k in dst_src if k == path or k.startswith(path + ".")]:
                del dst_src[k]
            dst[key] = copy.deepcopy(value)
            dst_src.update({k: v for k, v in src_src.items() if k == path or _under(k, path)})
        else:
            _merge(old, dst_src, value, src_src, path)


def _validate(data: Mapping, where: Any) -> dict[str, Any]:
    ensure_plugins_loaded()  # plugins register components and may declare sections
    out: dict[str, Any] = {}
    for name, value in data.items():
        section = SECTIONS.get(name) if isinstance(name, str) else None
        if section is None:
            raise SpecError(
                f"{where(str(name))}: unknown top-level section {name!r}; known sections: "
                f"{', '.join(sorted(SECTIONS))}"
            )
        if section.component_kind is not None:
            out[name] = validate_component(section.component_kind, value, name, where)
        else:
            out[name] = validate_section(section.schema, value, name, where)
    return out


def _leaf_paths(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, Mapping) and value:
        out: list[str] = []
        for k, v in value.items():
            out += _leaf_paths(v, _join(prefix, k))
        return out
    return [prefix] if prefix else []


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _under(key: str, path: str) -> bool:
    return key.startswith(path + ".")


__all__ = ["SECTIONS", "Section", "Spec", "check_type", "load_spec", "register_section", "to_plain"]
