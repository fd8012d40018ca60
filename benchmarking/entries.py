"""Benchmark entries: what is measured (a spec file or a named torchvision baseline).

An entry string is either a spec path (``specs/ssd300_vgg16_coco.yaml``, also found in the
shipped zoo by file name) or ``tv:NAME`` for a torchvision detection or segmentation model
built with ``weights=None, weights_backbone=None`` (no download). Every model is driven through
anchorage's model I/O: ``model(images: list[Tensor[3,H,W]], targets)``; train mode returns a
dict of ``loss_*`` tensors, eval mode one dict per image (detections, or ``{"sem_seg":
[C+1,H,W]}``).
torchvision's segmentation models take a batched tensor and return no loss, so they are wrapped
in ``SegmentationAdapter``.

Twins: an anchorage spec may name a torchvision twin (``tv:ssd300_vgg16``). The spec's model
then gets the twin's weights through a converter (torchvision state_dict → anchorage
state_dict) looked up by the spec's model type, so both compute the same function and their
timings compare like with like. core never imports plugins: the tool passes the converters in.
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

Task = Literal["detection", "instance", "semantic"]
Converter = Callable[..., Mapping[str, torch.Tensor]]
TV_PREFIX = "tv:"


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

    ``source``: spec path or ``tv:NAME``; ``label``: name in the tables (default: spec stem or
    the ``tv:`` string); ``twin``: ``tv:NAME`` whose weights a spec entry loads (converted);
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
        if self.source.startswith(TV_PREFIX):
            return self.source
        return Path(self.source).stem


@attrs.define(kw_only=True)
class BenchEntry:
    """A resolved entry: how to build its model, its task and where its weights come from.

    ``build()`` returns a fresh model (CPU, float32, random weights seeded by the caller).
    ``model_type`` is the spec's model type (None for torchvision baselines).
    """

    request: EntryRequest
    kind: Literal["spec", "torchvision"]
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
    specs = ", ".join(available_specs()) or "(none shipped yet)"
    return (
        f"unknown benchmark entry {entry!r}: expected a spec file or tv:NAME.\n"
        f"  torchvision baselines: {baselines}\n  specs in the zoo: {specs}"
    )


def resolve_entry(request: EntryRequest) -> BenchEntry:
    """Check ``request`` (spec validated now, baseline name known) and return its entry."""
    src = request.source
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
    twin_task = torchvision_baselines().get((request.twin or "")[len(TV_PREFIX) :])
    return BenchEntry(
        request=request,
        kind="spec",
        task=spec_task(spec, twin_task),
        build=lambda: spec.model.build(),
        model_type=spec.model.type,
        spec=spec,
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


def convert_twin_weights(
    model: nn.Module,
    twin: nn.Module,
    model_type: str,
    converters: Mapping[str, Converter],
    twin_name: str,
) -> None:
    """Load ``twin``'s weights into ``model`` through ``converters[model_type]`` (strict).

    The converter takes the torchvision state_dict (and, when it accepts two arguments, the
    target model) and returns a state_dict for ``model``. Errors say what did not fit.
    """
    from anchorage.core.checkpoint import check_state_fits

    conv = converters.get(model_type)
    if conv is None:
        known = ", ".join(sorted(converters)) or "none"
        raise CheckpointError(
            f"no converter from {twin_name} for model type {model_type!r} (converters: {known})"
        )
    inner = twin.model if isinstance(twin, SegmentationAdapter) else twin
    state = inner.state_dict()
    n_args = len(inspect.signature(conv).parameters)
    converted = conv(state, model) if n_args >= 2 else conv(state)
    check_state_fits(model, converted, f"weights converted from {twin_name}")
    model.load_state_dict(converted)
