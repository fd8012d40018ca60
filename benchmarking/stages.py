"""Per-stage time breakdown of a forward pass or a train step (preprocess, backbone, ...).

Protocol: a model may define ``benchmark_stages() -> dict[str, target]`` where a target is a
submodule, an attribute path relative to the model (``"transform.postprocess"``, which may
name a method), or a list of these. Without it, well-known attribute names are looked up
(``FALLBACK_STAGES``), which covers anchorage's models and torchvision's detection models
(``transform``, ``backbone.body``, ``backbone.fpn``, ``rpn``, ``roi_heads``,
``postprocess_detections``, ``transform.postprocess``). The train-mode stages are ``assign``
(the matcher: ``SetPredictionDetector.assign``, a dense model's ``matcher``, torchvision's
``proposal_matcher``) and ``loss``.

Modules are timed with forward pre-/post-hooks, methods by wrapping the bound method on the
instance for the duration of the measurement. Times are exclusive: a stage running inside
another (``roi_heads.postprocess_detections`` inside ``roi_heads``) is subtracted from the
outer one. ``other`` is the forward's total minus all stages (glue code, interpolation).
Stages the calls never entered are left out. A train step is measured the same way with
``step_stage``: the model's own forward is timed too, ``other`` is then the glue inside the
forward and ``step_stage`` the rest of the step (backward and optimizer).
Timing runs in its own pass: the hooks synchronise CUDA at every boundary, which would
distort the latency rounds.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .timing import Clock, synchronize, timed_call

STAGE_ORDER = (
    "preprocess", "backbone", "neck", "anchors", "transformer", "head", "assign", "loss",
    "postprocess",
)  # fmt: skip
TRAIN_STEP_STAGE = "backward_step"
"""The part of a train step outside the model's forward: loss sum, backward, optimizer."""
FALLBACK_STAGES: dict[str, tuple[str, ...]] = {
    "preprocess": ("preprocess", "preprocessor", "transform"),
    "backbone": ("backbone.body", "backbone"),
    "neck": ("neck", "backbone.fpn", "input_projection"),
    # anchorage's generators are plain objects whose ``anchors`` method the skeletons call;
    # torchvision's are modules called directly (the first that exists is timed)
    "anchors": (
        "anchor_generator.anchors",
        "rpn.anchor_generator.anchors",
        "anchor_generator",
        "rpn.anchor_generator",
    ),
    "transformer": ("transformer",),
    "head": (
        "head",
        "heads",
        "rpn",
        "roi_heads",
        "roi_box",
        "roi_box.detect",
        "roi_mask",
        "roi_mask.detect",
        "classifier",
        "aux_classifier",
        "aux_head",
    ),
    # train mode only: the matchers (set prediction's ``assign`` stacks the decoder layers
    # and calls its ``matcher`` once) and the losses
    "assign": (
        "assign",
        "matcher",
        "rpn.matcher",
        "roi_box.matcher",
        "proposal_matcher",
        "rpn.proposal_matcher",
        "roi_heads.proposal_matcher",
    ),
    "loss": ("loss", "rpn.loss", "compute_loss", "rpn.compute_loss"),
    "postprocess": (
        "postprocess",
        "postprocessor",
        "postprocess_detections",
        "roi_heads.postprocess_detections",
        "roi_box.postprocessor",
        "roi_mask.paste",
        "transform.postprocess",
        "preprocess.postprocess",
        "preprocessor.postprocess",
    ),
}
_CLASS_ATTR = object()
FIRST_MATCH_ONLY = frozenset({"preprocess", "backbone", "anchors"})
"""Stages whose candidates are alternatives (``backbone.body`` else ``backbone``)."""


def _lookup(root: Any, path: str) -> tuple[Any, str, Any] | None:
    """(owner, attribute, value) for a dotted attribute path, or None when absent."""
    owner = root
    parts = path.split(".")
    for part in parts[:-1]:
        owner = getattr(owner, part, None)
        if owner is None:
            return None
    value = getattr(owner, parts[-1], None)
    if value is None or not callable(value):
        return None
    return owner, parts[-1], value


def stage_targets(model: nn.Module) -> dict[str, list[tuple[Any, str, Any]]]:
    """Stage name → list of (owner, attribute, module-or-callable) to time."""
    declared = getattr(model, "benchmark_stages", None)
    if callable(declared):
        out: dict[str, list[tuple[Any, str, Any]]] = {}
        for stage, targets in declared().items():
            items = targets if isinstance(targets, (list, tuple)) else [targets]
            found = [_lookup(model, t) if isinstance(t, str) else (None, "", t) for t in items]
            out[stage] = [f for f in found if f is not None]
        return out
    out = {}
    for stage, candidates in FALLBACK_STAGES.items():
        found = [f for f in (_lookup(model, c) for c in candidates) if f is not None]
        if stage in FIRST_MATCH_ONLY:
            found = found[:1]
        out[stage] = found
    return out


class StageClock:
    """Accumulates exclusive seconds per stage from nested enter/exit calls."""

    def __init__(self, device: torch.device, clock: Clock = time.perf_counter) -> None:
        self.device = device
        self.clock = clock
        self.stack: list[list[Any]] = []
        self.totals: dict[str, float] = defaultdict(float)

    def enter(self, stage: str) -> None:
        synchronize(self.device)
        self.stack.append([stage, self.clock(), 0.0])

    def exit(self) -> None:
        synchronize(self.device)
        stage, start, children = self.stack.pop()
        elapsed = self.clock() - start
        self.totals[stage] += elapsed - children
        if self.stack:
            self.stack[-1][2] += elapsed


def _wrap_method(clock: StageClock, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        clock.enter(stage)
        try:
            return fn(*args, **kwargs)
        finally:
            clock.exit()

    return wrapped


@contextmanager
def instrument(
    model: nn.Module, clock: StageClock, whole: str | None = None
) -> Iterator[list[str]]:
    """Attach the stage timers to ``model`` (with ``whole``, also its own forward as that
    stage); yields the instrumented stage names."""
    handles: list[Any] = []
    patched: list[tuple[Any, str, Any]] = []
    seen: set[int] = set()
    names: list[str] = []
    targets_by_stage = stage_targets(model)
    if whole is not None:
        targets_by_stage = {whole: [(None, "", model)], **targets_by_stage}
    try:
        for stage, targets in targets_by_stage.items():
            for owner, attr, target in targets:
                if id(target) in seen:
                    continue
                seen.add(id(target))
                if isinstance(target, nn.Module):
                    handles.append(
                        target.register_forward_pre_hook(lambda m, a, s=stage: clock.enter(s))
                    )
                    handles.append(
                        target.register_forward_hook(lambda m, a, o: clock.exit(), always_call=True)
                    )
                else:
                    patched.append((owner, attr, vars(owner).get(attr, _CLASS_ATTR)))
                    setattr(owner, attr, _wrap_method(clock, stage, target))
                if stage not in names:
                    names.append(stage)
        yield names
    finally:
        for h in handles:
            h.remove()
        for owner, attr, original in reversed(patched):
            if original is _CLASS_ATTR:
                delattr(owner, attr)
            else:
                setattr(owner, attr, original)


def measure_stages(
    model: nn.Module,
    call: Callable[[], Any],
    device: torch.device,
    iters: int,
    clock: Clock = time.perf_counter,
    step_stage: str | None = None,
) -> dict[str, float]:
    """Mean exclusive milliseconds per stage over ``iters`` calls, plus ``other`` and ``total``.

    ``call`` runs one forward of ``model`` — or, with ``step_stage``, one train step that calls
    the model once: ``other`` is then the forward's glue and ``step_stage`` the time outside
    the forward. Stages the model does not have, or the calls never entered, are left out.
    """
    stage_clock = StageClock(device, clock)
    total = 0.0
    whole = None if step_stage is None else "other"
    with instrument(model, stage_clock, whole) as names:
        for _ in range(iters):
            total += timed_call(call, device, clock)
    entered = [s for s in names if s in stage_clock.totals and s != whole]
    order = [s for s in STAGE_ORDER if s in entered] + [s for s in entered if s not in STAGE_ORDER]
    out = {s: stage_clock.totals[s] * 1000.0 / iters for s in order}
    rest = max(0.0, total * 1000.0 / iters - sum(out.values()))
    if step_stage is None:
        out["other"] = rest
    else:
        out["other"] = stage_clock.totals.get("other", 0.0) * 1000.0 / iters
        out[step_stage] = max(0.0, rest - out["other"])
    out["total"] = total * 1000.0 / iters
    return out
