"""Conformance kit: reusable checks that a component honours its interface.

anchorage's suite runs ``check_entry`` over every registry entry; a plugin author runs it
on theirs::

    from anchorage.core.testing import check_entry
    def test_my_matcher():
        check_entry("matcher", "my_matcher")

Each registered entry is built from its ``examples`` (parameter mappings given at
registration; ``({},)`` when none) and handed to the check for its kind, then to the check of
each role it implements (``role_check``: heads, losses and postprocessors are checked against
the signature of their role, with inputs built from their config). Kinds without a
behavioural check here are checked for building and finite parameters; their own tests
cover behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .data.conformance import check_dataset, check_transform
from .evaluation.conformance import check_metric
from .interfaces import FeatureSpec, dense_conformance
from .interfaces import conformance as role_conformance
from .plugins import ensure_plugins_loaded
from .registry import EmptyConfig, Entry, registry_for

CHECKS: dict[str, Callable[[Any], None]] = {}
ROLE_CHECKS: dict[str, Callable[[Any, Any], None]] = {}


def conformance_check(kind: str) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    """Register the behavioural check for components of ``kind``."""

    def decorator(fn: Callable[[Any], None]) -> Callable[[Any], None]:
        CHECKS[kind] = fn
        return fn

    return decorator


def role_check(role: str) -> Callable[[Callable[[Any, Any], None]], Callable[[Any, Any], None]]:
    """Register the check of components implementing ``role``: ``check(component, config)``.

    ``config`` is the validated config the component was built from (injected fields such
    as ``in_channels`` or ``num_classes`` included), so the check can size its inputs.
    """

    def decorator(fn: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
        ROLE_CHECKS[role] = fn
        return fn

    return decorator


def build_example_configs(entry: Entry) -> list[tuple[Any, Any]]:
    """``(config, component)`` for each of ``entry``'s examples (defaults when it has none).

    A component that declares no ``Config`` but is given parameters, or whose factory does not
    take the one config argument, fails with a one-line message saying so.
    """
    out = []
    for params in entry.examples or ({},):
        what = f"{entry.kind} {entry.name!r}"
        try:
            config = entry.config(**params)
        except TypeError as exc:
            if entry.config is not EmptyConfig:
                raise
            raise AssertionError(
                f"{what} declares no Config (a frozen attrs class) but its example sets "
                f"{sorted(params)}: {exc}"
            ) from None
        try:
            obj = entry.factory(config)
        except TypeError as exc:
            if entry.config is not EmptyConfig:
                raise
            raise AssertionError(
                f"{what} declares no Config and cannot be built with one (factory(config)); "
                f"declare a frozen attrs Config and take it in __init__: {exc}"
            ) from None
        out.append((config, obj))
    return out


def build_examples(entry: Entry) -> list[Any]:
    """Build ``entry`` from each of its examples (or from defaults when it has none)."""
    return [obj for _, obj in build_example_configs(entry)]


def check_entry(kind: str, name: str) -> None:
    """Build registry entry ``kind``/``name`` from its examples and run the kind's checks,
    then the checks of every role it implements."""
    ensure_plugins_loaded()
    entry = registry_for(kind).get(name)
    for config, obj in build_example_configs(entry):
        if isinstance(obj, nn.Module):
            check_finite_parameters(obj)
        check = CHECKS.get(kind)
        if check is not None:
            check(obj)
        for role in entry.roles:
            role_checker = ROLE_CHECKS.get(role)
            if role_checker is not None:
                role_checker(obj, config)


def check_finite_parameters(module: nn.Module) -> None:
    """Every parameter and buffer of ``module`` is finite."""
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        if t.is_floating_point():
            assert torch.isfinite(t).all(), f"{name} has non-finite values"


@conformance_check("backbone")
def check_backbone(backbone: Any, size: tuple[int, int] | None = None, batch: int = 2) -> None:
    """Outputs match ``feature_info`` (names, order, channels, stride), dtype, no NaN.

    The input is ``size`` or the backbone's ``example_input_size`` attribute (for backbones
    that need a minimum size, e.g. SSD300's extra layers) or 96×128.
    """
    size = size or getattr(backbone, "example_input_size", (96, 128))
    info = backbone.feature_info
    assert info and all(isinstance(f, FeatureSpec) for f in info), "feature_info not declared"
    backbone.eval()
    x = torch.rand(batch, 3, *size)
    with torch.no_grad():
        out = backbone(x)
    _check_features(out, info, size, batch)


@conformance_check("neck")
def check_neck(neck: Any, size: tuple[int, int] = (128, 128), batch: int = 2) -> None:
    """Maps features described by ``in_feature_info`` to features matching ``feature_info``."""
    feats = {
        f.name: torch.rand(batch, f.channels, size[0] // f.stride, size[1] // f.stride)
        for f in neck.in_feature_info
    }
    neck.eval()
    with torch.no_grad():
        out = neck(feats)
    _check_features(out, neck.feature_info, size, batch)


def _check_features(
    out: dict[str, torch.Tensor], info: list[FeatureSpec], size: tuple[int, int], batch: int
) -> None:
    assert list(out) == [f.name for f in info], f"keys {list(out)} vs {[f.name for f in info]}"
    for f in info:
        t = out[f.name]
        assert t.dtype == torch.float32 and t.shape[:2] == (batch, f.channels), (
            f"{f.name}: shape {tuple(t.shape)}, expected ({batch}, {f.channels}, ...)"
        )
        for dim, length in zip(t.shape[2:], size):
            expected = length / f.stride
            assert abs(dim - expected) <= max(2.0, 0.1 * expected), (
                f"{f.name}: spatial {tuple(t.shape[2:])} does not fit stride {f.stride} of {size}"
            )
        assert torch.isfinite(t).all(), f"{f.name} has NaN/Inf"


@conformance_check("anchor_generator")
def check_anchor_generator(gen: Any) -> None:
    """Anchor count = sum h*w*n per level; float32 [A,4] xyxy with x2>x1, y2>y1."""
    sizes = [(8, 10), (4, 5), (2, 3)]
    n = gen.num_anchors_per_location()
    sizes = sizes[: len(n)] if len(n) <= len(sizes) else [(2, 2)] * len(n)
    anchors = gen((64, 80), sizes)
    per_level = gen((64, 80), sizes, per_level=True)
    expected = sum(h * w * k for (h, w), k in zip(sizes, n))
    assert anchors.shape == (expected, 4) and anchors.dtype == torch.float32, anchors.shape
    assert len(per_level) == len(n)
    assert torch.equal(torch.cat(list(per_level)), anchors)
    assert (anchors[:, 2:] > anchors[:, :2]).all(), "anchors must be xyxy with positive size"


@conformance_check("box_coder")
def check_box_coder(coder: Any) -> None:
    """decode(encode(b, a), a) == b, any batch shape, empty input.

    A coder whose parameterisation is bounded (YOLO: a box centre inside the reference's grid
    cell) provides ``conformance_sample(generator) -> (boxes, anchors)`` within its domain.
    """
    g = torch.Generator().manual_seed(0)
    if hasattr(coder, "conformance_sample"):
        boxes, anchors = coder.conformance_sample(g)
    else:
        xy = torch.rand(2, 30, 2, generator=g) * 100
        anchors = torch.cat([xy, xy + 5 + torch.rand(2, 30, 2, generator=g) * 50], -1)
        xy = torch.rand(2, 30, 2, generator=g) * 100
        boxes = torch.cat([xy, xy + 1 + torch.rand(2, 30, 2, generator=g) * 80], -1)
    deltas = coder.encode(boxes, anchors)
    assert deltas.shape == boxes.shape
    torch.testing.assert_close(coder.decode(deltas, anchors), boxes, atol=1e-3, rtol=1e-4)
    empty = torch.zeros(0, 4)
    assert coder.encode(empty, empty).shape == (0, 4)
    assert coder.decode(empty, empty).shape == (0, 4)


@conformance_check("sampler")
def check_sampler(sampler: Any) -> None:
    """Bool [B,N] positive/negative masks, disjoint, only where labels allow."""
    matched = torch.tensor([[0, 1, -1, -1, -2, -1, 2, -1], [-1] * 8])
    pos, neg = sampler(matched)
    assert pos.shape == neg.shape == matched.shape and pos.dtype == torch.bool
    assert not (pos & neg).any()
    assert not pos[matched < 0].any() and not neg[matched != -1].any()


@conformance_check("optimizer")
def check_optimizer(optimizer: Any) -> None:
    """A ``torch.optim.Optimizer`` whose step moves parameters that have a gradient."""
    assert isinstance(optimizer, torch.optim.Optimizer), type(optimizer)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    for p in params:
        p.grad = None
    assert any(not torch.equal(p, b) for p, b in zip(params, before)), "step changed nothing"


@conformance_check("lr_scheduler")
def check_lr_scheduler(scheduler: Any) -> None:
    """An LRScheduler giving finite lrs >= 0 whose state survives a weights-only load
    (checkpoints are read with ``weights_only=True``)."""
    import io

    assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler), type(scheduler)
    for _ in range(3):
        scheduler.optimizer.step()
        scheduler.step()
    lrs = scheduler.get_last_lr()
    assert all(lr >= 0 and lr == lr and lr != float("inf") for lr in lrs), lrs
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    torch.load(buffer, weights_only=True)


# Kind-specific checks that live beside the subsystems they check, registered here explicitly.
conformance_check("dataset")(check_dataset)
conformance_check("transform")(check_transform)
conformance_check("metric")(check_metric)
for _checks in (role_conformance, dense_conformance):
    ROLE_CHECKS.update(_checks.ROLE_CHECKS)
    for _kind, _check in _checks.KIND_CHECKS.items():
        conformance_check(_kind)(_check)


@conformance_check("roi_extractor")
def check_roi_extractor(extractor: Any) -> None:
    """``[sum R_i, C, h, w]`` in box order, finite; no boxes give ``[0, C, h, w]``."""
    info = extractor.in_feature_info
    feats = {
        f.name: torch.rand(2, f.channels, max(64 // f.stride, 1), max(64 // f.stride, 1))
        for f in info
    }
    boxes = [torch.tensor([[4.0, 4, 40, 30], [0, 0, 64, 64]]), torch.tensor([[10.0, 8, 20, 50]])]
    out = extractor(feats, boxes, [(64, 64), (64, 64)])
    assert out.dim() == 4 and out.shape[0] == 3 and torch.isfinite(out).all(), out.shape
    empty = extractor(feats, [torch.zeros(0, 4), torch.zeros(0, 4)], [(64, 64), (64, 64)])
    assert empty.shape == (0, *out.shape[1:]), empty.shape
