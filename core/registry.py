"""Registries: one per kind of component, filled by plugins, looked up by name from specs.

A registry maps an explicit name to a factory (usually a class) and the frozen attrs class
that declares its parameters. A lookup never imports anything: only names that a plugin
registered can be built, so a spec or a checkpoint cannot make the program import code.
A lookup has no side effect either: plugins fill the registries at one named point
(``anchorage.core.plugins.ensure_plugins_loaded``, called by ``load_spec``, ``build_model``,
``build_component``, ``check_entry`` and the tools), never on the first ``get``.

    @MATCHERS.register("max_iou")
    class MaxIoUMatcher(Matcher):
        @attrs.frozen(kw_only=True)
        class Config:
            high_threshold: float = 0.5

        def __init__(self, cfg: Config) -> None: ...

The factory is called with one argument, the validated ``Config`` instance. A factory
without a ``Config`` takes no parameters and is called with an empty config.
"""

from __future__ import annotations

import contextvars
import difflib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
from torch import nn

from .errors import RegistryError
from .interfaces import (
    AnchorGenerator,
    Backbone,
    BoxCoder,
    Head,
    Loss,
    Matcher,
    Neck,
    PositionalEncoding,
    Postprocessor,
    RoIExtractor,
    Sampler,
    SetTransformer,
)

# Set by the plugin manager while a plugin's registration hook runs, so that each entry
# records the plugin that provided it.
current_provider: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "anchorage_current_provider", default=None
)


@attrs.frozen(kw_only=True)
class EmptyConfig:
    """Config of a component that takes no parameters."""


@attrs.frozen(kw_only=True)
class Entry:
    """One registered component: its name, factory, config class and provider."""

    kind: str
    name: str
    factory: Callable[..., Any]
    config: type
    provider: str
    module: str
    examples: tuple[Mapping[str, Any], ...] = ()

    @property
    def summary(self) -> str:
        """First line of the factory's docstring ('' when it has none)."""
        doc = (self.factory.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles the component implements: ``role`` of each interface class in its MRO.

        A role is an interface class (``core.interfaces``) defining a ``role`` class attribute,
        e.g. ``DenseLoss.role == "dense_loss"``; slots that declare a role accept only
        components implementing it.
        """
        if not isinstance(self.factory, type):
            return ()
        return tuple(
            dict.fromkeys(c.__dict__["role"] for c in self.factory.__mro__ if "role" in c.__dict__)
        )

    def build(self, **params: Any) -> Any:
        """Build from already validated parameters (``anchorage.core.spec`` validates)."""
        return self.factory(self.config(**params))


class Registry:
    """Name → component map for one kind (backbone, matcher, ...).

    ``contract`` is the interface the kind's components implement (checked at registration
    when it is a class); ``doc`` states the contract in one line for listings.
    """

    def __init__(self, kind: str, doc: str, contract: type | None = None) -> None:
        self.kind = kind
        self.doc = doc
        self.contract = contract
        self._entries: dict[str, Entry] = {}

    def register(
        self,
        name: str,
        *,
        config: type | None = None,
        examples: tuple[Mapping[str, Any], ...] = (),
    ) -> Callable[[Any], Any]:
        """Decorator registering ``obj`` under ``name``.

        ``config`` defaults to ``obj.Config`` (a frozen attrs class) or an empty config.
        ``examples`` are parameter mappings the conformance kit builds the component with
        (needed when the config has required parameters).
        """
        if not isinstance(name, str) or not name or "." in name or "/" in name:
            raise RegistryError(
                f"{self.kind} names are plain words; got {name!r} (no dots or slashes: "
                "a name is never an import path)"
            )

        def decorator(obj: Any) -> Any:
            cfg = config if config is not None else getattr(obj, "Config", EmptyConfig)
            if not attrs.has(cfg):
                raise RegistryError(
                    f"{self.kind} {name!r}: config must be an attrs class, got {cfg!r}"
                )
            if self.contract is not None and isinstance(obj, type):
                if not issubclass(obj, self.contract):
                    raise RegistryError(
                        f"{self.kind} {name!r}: {obj.__qualname__} must subclass "
                        f"{self.contract.__qualname__}"
                    )
            module = getattr(obj, "__module__", "?")
            provider = current_provider.get() or module.split(".")[0]
            entry = Entry(
                kind=self.kind,
                name=name,
                factory=obj,
                config=cfg,
                provider=provider,
                module=module,
                examples=tuple(examples),
            )
            old = self._entries.get(name)
            if old is not None:
                if old.factory is obj:
                    return obj
                raise RegistryError(
                    f"duplicate {self.kind} name {name!r}: already registered by "
                    f"{old.provider} ({old.module}.{_qualname(old.factory)}), now again by "
                    f"{provider} ({module}.{_qualname(obj)})"
                )
            self._entries[name] = entry
            return obj

        return decorator

    def get(self, name: str) -> Entry:
        """The entry registered as ``name``; an error with close matches otherwise."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise RegistryError(self.unknown_message(name)) from None

    def unknown_message(self, name: object) -> str:
        """The message for an unknown ``name``: kind, name, closest names and providers."""
        text = f"unknown {self.kind} {name!r}"
        if isinstance(name, str) and "." in name:
            text += " (a type is a registered name; dotted import paths are never imported)"
        close = difflib.get_close_matches(str(name), list(self._entries), n=3, cutoff=0.5)
        if close:
            hints = ", ".join(f"{c!r} (from {self._entries[c].provider})" for c in close)
            text += f"; did you mean {hints}?"
        elif self._entries:
            text += f"; registered {self.kind} names: {', '.join(sorted(self._entries))}"
        else:
            text += f"; no {self.kind} is registered"
        return text

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        """Sorted registered names."""
        return [e.name for e in self]

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests and plugin unloading)."""
        self._entries.pop(name, None)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"


def _qualname(obj: Any) -> str:
    return getattr(obj, "__qualname__", repr(obj))


BACKBONES = Registry("backbone", "image batch [B,3,H,W] -> features dict, fine to coarse", Backbone)
NECKS = Registry("neck", "features dict -> features dict (e.g. FPN)", Neck)
ANCHOR_GENERATORS = Registry(
    "anchor_generator", "image size + feature shapes -> anchors [A,4]", AnchorGenerator
)
MATCHERS = Registry(
    "matcher",
    "Anchors + padded GroundTruth (+ predictions) -> Assignment: gt index [B,A] (-1 bg, -2 ignore)",
    Matcher,
)
BOX_CODERS = Registry(
    "box_coder", "encode(gt, anchors) -> deltas; decode(deltas, anchors)", BoxCoder
)
HEADS = Registry("head", "features -> named prediction tensors", Head)
ROI_EXTRACTORS = Registry("roi_extractor", "features + boxes per image -> [R,C,h,w]", RoIExtractor)
SAMPLERS = Registry("sampler", "matched labels -> positive/negative selection", Sampler)
POSTPROCESSORS = Registry("postprocessor", "predictions -> per-image result dicts", Postprocessor)
LOSSES = Registry("loss", "predictions + targets -> dict of loss_* terms", Loss)
POSITIONAL_ENCODINGS = Registry(
    "positional_encoding", "padding mask [B,h,w] -> positions [B,D,h,w]", PositionalEncoding
)
TRANSFORMERS = Registry(
    "transformer", "feature levels + masks + positions -> decoder states per layer", SetTransformer
)
TRANSFORMER_LAYERS = Registry(
    "transformer_layer", "one encoder or decoder layer of a set transformer", nn.Module
)
MODELS = Registry("model", "a whole pipeline with torchvision-style detection I/O")
DATASETS = Registry("dataset", "index -> (image [3,H,W], target dict)")
TRANSFORMS = Registry("transform", "transforms.v2 transform of (image, target)")
OPTIMIZERS = Registry("optimizer", "parameter groups -> torch.optim.Optimizer")
LR_SCHEDULERS = Registry("lr_scheduler", "optimizer -> learning-rate scheduler")
METRICS = Registry("metric", "predictions + ground truth -> named numbers")

REGISTRIES: dict[str, Registry] = {
    r.kind: r
    for r in (
        BACKBONES,
        NECKS,
        ANCHOR_GENERATORS,
        MATCHERS,
        BOX_CODERS,
        HEADS,
        ROI_EXTRACTORS,
        SAMPLERS,
        POSTPROCESSORS,
        LOSSES,
        POSITIONAL_ENCODINGS,
        TRANSFORMERS,
        TRANSFORMER_LAYERS,
        MODELS,
        DATASETS,
        TRANSFORMS,
        OPTIMIZERS,
        LR_SCHEDULERS,
        METRICS,
    )
}


def registry_for(kind: str) -> Registry:
    """The registry of ``kind``; a clear error for an unknown kind."""
    try:
        return REGISTRIES[kind]
    except KeyError:
        raise RegistryError(
            f"unknown component kind {kind!r}; kinds: {', '.join(REGISTRIES)}"
        ) from None
