"""Benchmark entries: what is measured (a spec file or a named baseline).

An entry string is a spec path (``specs/ssd300_vgg16_coco.yaml``, also found in the
shipped zoo by file name), ``tv:NAME`` for a torchvision detection or segmentation model
built with ``weights=None, weights_backbone=None`` (no download), or ``hf:NAME`` for a
transformers DETR / Deformable DETR built to mirror a ``set_prediction`` spec entry of the run
(``transformers_twins``). Every model is driven through
anchorage's model I/O: ``model(images: list[Tensor[3,H,W]], targets)``; train mode returns a
dict of ``loss_*`` tensors, eval mode one dict per image (detections, or ``{"sem_seg":
[C+1,H,W]}``).
torchvision's segmentation models take a batched tensor and return no loss, so they are wrapped
in ``SegmentationAdapter``.

Twins: an anchorage spec may name a twin (``tv:ssd300_vgg16``, ``hf:detr``, or the label of
such an entry). The spec's model then gets the twin's weights through a converter (the twin's
state_dict → anchorage state_dict) looked up by the twin's framework and the spec's model
type, so both compute the same function and their timings compare like with like. core never
imports plugins: the tool passes the converters in.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import torch
from torch import nn
from torch.nn import functional as F

from anchorage.core.errors import AnchorageError, CheckpointError, SpecError
from anchorage.core.spec import SPECS_DIR, Spec, load_spec, resolve_spec_path

from .transformers_twins import (
    HF_BASELINES,
    HF_PREFIX,
    TransformersDetector,
    build_transformers_twin,
    hf_arch,
    require_transformers,
)

Task = Literal["detection", "instance", "semantic"]
Converter = Callable[..., Mapping[str, torch.Tensor]]
Converters = Mapping[str | tuple[str, str], Converter]
"""Converters by ``(framework, model type)`` (``("transformers", "set_prediction")``); a plain
model-type key is a torchvision converter."""
TV_PREFIX = "tv:"
FRAMEWORKS = {TV_PREFIX: "torchvision", HF_PREFIX: "transformers"}
"""Baseline prefix → the framework whose converters give its weights to a spec's model."""


def is_baseline(source: str) -> bool:
    """Whether an entry string names a baseline (``tv:`` or ``hf:``), not a spec file."""
    return source.startswith(tuple(FRAMEWORKS))


def find_entry(ref: str, names: Sequence[str], sources: Sequence[str]) -> int | None:
    """Index of the entry a twin reference names: the one labelled ``ref``, else the first
    whose source is ``ref``; None when neither."""
    if ref in names:
        return list(names).index(ref)
    return list(sources).index(ref) if ref in sources else None


def torchvision_baselines() -> dict[str, Task]:
    """Names usable as ``tv:NAME`` → task (keypoint R-CNN needs keypoint targets: left out)."""
    from torchvision import models

    out: dict[str, Task] = {}
    for name in models.list_models(module=models.detection):
        if not name.startswith("keypoint"):
            out[name] = "instance" if name.startswith("maskrcnn") else "detection"
    for name in models.list_models(module=models.segmentation):
        out[name] = "semantic"
    return out


def available_specs() -> list[str]:
    """Spec files shipped in the zoo (``specs/*.yaml``), by file name."""
    return sorted(p.name for p in SPECS_DIR.glob("*.yaml"))


@attrs.frozen(kw_only=True)
class EntryRequest:
    """What the user asked to measure, before anything is built.

    ``source``: spec path, ``tv:NAME`` or ``hf:NAME``; ``label``: name in the tables (default:
    spec stem or the baseline string); ``twin``: the baseline (``tv:NAME``, ``hf:NAME``, or
    the label of a baseline entry of the run) whose weights a spec entry loads (converted);
    ``overrides``: ``--set`` items for a spec; ``kwargs``: extra builder arguments of a
    torchvision baseline (e.g. ``num_classes``); ``checkpoint``: weights file for AP.
    """

    source: str
    label: str = ""
    twin: str | None = None
    overrides: tuple[str, ...] = ()
    kwargs: Mapping[str, Any] = attrs.field(factory=dict)
    checkpoint: str | None = None

    @property
    def name(self) -> str:
        """The label shown in tables."""
        if self.label:
            return self.label
        if is_baseline(self.source):
            return self.source
        return Path(self.source).stem


@attrs.define(kw_only=True)
class BenchEntry:
    """A resolved entry: how to build its model, its task and where its weights come from.

    ``build()`` returns a fresh model (CPU, float32, random weights seeded by the caller).
    ``model_type`` is the spec's model type (None for baselines); ``spec`` the spec (for a
    transformers twin: the spec it mirrors).
    """

    request: EntryRequest
    kind: Literal["spec", "torchvision", "transformers"]
    task: Task
    build: Callable[[], nn.Module]
    model_type: str | None = None
    spec: Spec | None = None

    @property
    def name(self) -> str:
        return self.request.name


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SegmentationAdapter(nn.Module):
    """Gives a torchvision segmentation model anchorage's model I/O.

    ``forward(images: list[Tensor[3,H,W]] | Tensor[B,3,H,W], targets=None)`` with 0..1
    images of one size, normalised here with ImageNet's mean/std (torchvision's segmentation
    models take normalised input; anchorage's normalise inside, as torchvision's detection
    models do). Eval mode → one ``{"sem_seg": [C+1,H,W]}`` logits dict per image; train mode
    with targets (``semantic_mask`` int64 [H,W], 255 = ignore) → ``{"loss_seg": ...}``:
    cross-entropy on ``out`` plus 0.5 × the auxiliary head's, as torchvision's reference
    training script computes it.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)

    def forward(
        self, images: Sequence[torch.Tensor] | torch.Tensor, targets: list[dict] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        x = images if isinstance(images, torch.Tensor) else torch.stack(list(images))
        out = self.model((x - self.mean) / self.std)
        if not self.training:
            return [{"sem_seg": logits} for logits in out["out"]]
        if targets is None:
            raise ValueError("train mode needs targets with 'semantic_mask'")
        mask = torch.stack([t["semantic_mask"] for t in targets]).to(x.device).long()
        loss = F.cross_entropy(out["out"], mask, ignore_index=255)
        if "aux" in out:
            loss = loss + 0.5 * F.cross_entropy(out["aux"], mask, ignore_index=255)
        return {"loss_seg": loss}

    def benchmark_stages(self) -> dict[str, list[nn.Module]]:
        """Backbone and heads of the wrapped model (interpolation to input size is 'other')."""
        heads = [m for m in (self.model.classifier, getattr(self.model, "aux_classifier", None))]
        return {"backbone": [self.model.backbone], "head": [h for h in heads if h is not None]}


def build_torchvision(name: str, kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """A torchvision baseline without weights; segmentation models wrapped for anchorage I/O.

    ``kwargs`` go to torchvision's builder, except ``pretrained_layout: true``: build the
    layout torchvision uses when fine-tuning from ImageNet weights (FrozenBatchNorm2d in
    ResNet backbones, ``trainable_backbone_layers`` 3 for R-CNN, 4 for SSD) — which anchorage's
    COCO specs reproduce — still with random weights and without any download.
    """
    from torchvision import models

    task = torchvision_baselines().get(name)
    if task is None:
        raise AnchorageError(unknown_entry_message(TV_PREFIX + name))
    kwargs = dict(kwargs or {})
    layout = bool(kwargs.pop("pretrained_layout", False))
    backbone_weights = None
    if layout:
        backbone_weights = (
            inspect.signature(models.get_model_builder(name)).parameters["weights_backbone"].default
        )
    try:
        with _random_instead_of_download() if layout else contextlib.nullcontext():
            model = models.get_model(
                name, weights=None, weights_backbone=backbone_weights, **kwargs
            )
    except TypeError as exc:
        raise SpecError(f"{TV_PREFIX}{name}: bad builder arguments {kwargs}: {exc}") from None
    _check_kwargs(name, model, kwargs)
    return SegmentationAdapter(model) if task == "semantic" else model


def _check_kwargs(name: str, model: nn.Module, kwargs: Mapping[str, Any]) -> None:
    """torchvision's builders pass unknown keyword arguments on or drop them silently; a typo
    would go unnoticed, so every key must be a named parameter of the builder or the model."""
    from torchvision import models

    def named(fn: Callable[..., Any]) -> set[str]:
        params = inspect.signature(fn).parameters.values()
        return {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}

    accepted = (named(models.get_model_builder(name)) | named(type(model).__init__)) - {
        "self",
        "weights",
        "weights_backbone",
        "backbone",
    }
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise SpecError(
            f"{TV_PREFIX}{name}: unknown builder arguments {unknown}; accepted: "
            f"{', '.join(sorted(accepted))}, pretrained_layout"
        )


@contextlib.contextmanager
def _random_instead_of_download() -> Iterator[None]:
    """While active, torchvision 'loads' a weights enum by building its architecture with
    random weights: a builder takes its pretrained code path and nothing is downloaded."""
    from unittest import mock

    from torchvision import models
    from torchvision.models import _api

    def random_state(self: Any, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        arch = next(n for n in models.list_models() if models.get_model_weights(n) is type(self))
        return models.get_model(arch, weights=None).state_dict()

    with mock.patch.object(_api.WeightsEnum, "get_state_dict", random_state):
        yield


def unknown_entry_message(entry: str) -> str:
    """The error for an entry that is neither a spec file nor a known baseline."""
    baselines = ", ".join(TV_PREFIX + n for n in torchvision_baselines())
    hf = ", ".join(HF_PREFIX + n for n in HF_BASELINES)
    specs = ", ".join(available_specs()) or "(none shipped yet)"
    return (
        f"unknown benchmark entry {entry!r}: expected a spec file, tv:NAME or hf:NAME.\n"
        f"  torchvision baselines: {baselines}\n"
        f"  transformers baselines (mirror a set_prediction spec entry): {hf}\n"
        f"  specs in the zoo: {specs}"
    )


def check_baseline(source: str, prefix: str = "") -> None:
    """An error (after ``prefix``) unless ``source`` names a known tv: or hf: baseline."""
    if source.startswith(HF_PREFIX):
        try:
            hf_arch(source)
        except AnchorageError as exc:
            raise AnchorageError(prefix + str(exc)) from None
    elif source[len(TV_PREFIX) :] not in torchvision_baselines():
        raise AnchorageError(prefix + unknown_entry_message(source))


def resolve_entry(request: EntryRequest, mirror: Spec | None = None) -> BenchEntry:
    """Check ``request`` (spec validated now, baseline name known) and return its entry.

    An ``hf:`` baseline is built to mirror the spec ``mirror`` (the spec entry naming it as
    its twin); transformers must be installed.
    """
    src = request.source
    if src.startswith(HF_PREFIX):
        return _transformers_entry(request, mirror)
    if src.startswith(TV_PREFIX):
        name = src[len(TV_PREFIX) :]
        task = torchvision_baselines().get(name)
        if task is None:
            raise AnchorageError(unknown_entry_message(src))
        kwargs = dict(request.kwargs)
        return BenchEntry(
            request=request,
            kind="torchvision",
            task=task,
            build=lambda: build_torchvision(name, kwargs),
        )
    if not resolve_spec_path(src).is_file():
        raise AnchorageError(unknown_entry_message(src))
    if request.kwargs:
        raise SpecError(f"entry {src}: 'kwargs' is for tv: baselines; use 'set' for a spec")
    spec = load_spec(src, overrides=list(request.overrides))
    twin = request.twin or ""
    tv_name = twin[len(TV_PREFIX) :] if twin.startswith(TV_PREFIX) else ""
    twin_task = torchvision_baselines().get(tv_name)
    return BenchEntry(
        request=request,
        kind="spec",
        task=spec_task(spec, twin_task),
        build=lambda: spec.model.build(),
        model_type=spec.model.type,
        spec=spec,
    )


def _transformers_entry(request: EntryRequest, mirror: Spec | None) -> BenchEntry:
    src = request.source
    hf_arch(src)
    if request.kwargs:
        raise SpecError(f"entry {src}: 'kwargs' is for tv: baselines; an hf: twin follows its spec")
    if mirror is None:
        raise AnchorageError(
            f"{request.name}: a transformers twin is built to mirror a set_prediction spec entry "
            f"of the run: name it as that entry's twin (suite key 'twin: {request.name}' or "
            f"--twin ENTRY={request.name})"
        )
    require_transformers()
    from .transformers_twins import plan_twin

    plan_twin(src, mirror)  # a spec it cannot mirror is an error now, before anything is built
    return BenchEntry(
        request=request,
        kind="transformers",
        task="detection",
        build=lambda: build_transformers_twin(src, mirror),
        spec=mirror,
    )


def spec_task(spec: Spec, twin_task: Task | None) -> Task:
    """The task of a spec's model: its twin's, else guessed from the spec's metrics and type.

    A model class may also state it with a ``benchmark_task`` attribute (checked on build).
    """
    if twin_task is not None:
        return twin_task
    text = " ".join([spec.model.type, str(spec.data.get("eval", ""))]).lower()
    if "miou" in text or "semantic" in text or "fcn" in text or "deeplab" in text:
        return "semantic"
    if "mask" in text or "segm" in text:
        return "instance"
    return "detection"


def framework_of(source: str) -> str:
    """The framework of a baseline source (``tv:`` torchvision, ``hf:`` transformers)."""
    return next((f for p, f in FRAMEWORKS.items() if source.startswith(p)), "torchvision")


def find_converter(converters: Converters, framework: str, model_type: str) -> Converter | None:
    """The converter of ``framework`` state dicts for ``model_type`` (a plain model-type key
    is torchvision's)."""
    found = converters.get((framework, model_type))
    if found is None and framework == "torchvision":
        found = converters.get(model_type)
    return found


def convert_twin_weights(
    model: nn.Module,
    twin: nn.Module,
    model_type: str,
    converters: Converters,
    twin_name: str,
    twin_source: str | None = None,
) -> None:
    """Load ``twin``'s weights into ``model`` through the converter of the twin's framework
    (from ``twin_source``, default ``twin_name``) for ``model_type`` (strict).

    The converter takes the twin's state_dict (an adapter's wrapped model's; and, when it
    accepts two arguments, the target model) and returns a state_dict for ``model``. Errors
    say what did not fit.
    """
    from anchorage.core.checkpoint import check_state_fits

    conv = find_converter(converters, framework_of(twin_source or twin_name), model_type)
    if conv is None:
        known = ", ".join(sorted(":".join(k) if isinstance(k, tuple) else k for k in converters))
        raise CheckpointError(
            f"no converter from {twin_name} for model type {model_type!r} (converters: "
            f"{known or 'none'})"
        )
    adapters = (SegmentationAdapter, TransformersDetector)
    inner = twin.model if isinstance(twin, adapters) else twin
    state = inner.state_dict()
    n_args = len(inspect.signature(conv).parameters)
    converted = conv(state, model) if n_args >= 2 else conv(state)
    check_state_fits(model, converted, f"weights converted from {twin_name}")
    model.load_state_dict(converted)
