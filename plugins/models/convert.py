"""Weight conversion from other libraries' state dicts into anchorage checkpoints.

``CONVERTERS`` maps ``(source, model type)`` — e.g. ``("torchvision", "single_shot")`` — to a
function ``state_dict → state_dict`` that renames (and, if needed, reshapes) the source's
tensors for that anchorage model. Modules that provide a model register their converter
with ``register_converter`` (no registry lookup by path: only registered functions run)::

    @register_converter("torchvision", "two_stage")
    def convert_rcnn(state): ...

``convert_weights(source, src_path, spec, out_path)`` is the library function behind
``tools/convert_weights.py``: it builds the spec's model (which imports every plugin and
with them their converters), converts, checks the result fits the model exactly, and writes
an anchorage checkpoint with ``save_checkpoint``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from anchorage.core import Spec, build_model, save_checkpoint
from anchorage.core.checkpoint import check_state_fits, read_checkpoint
from anchorage.core.errors import CheckpointError

Converter = Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]]
CONVERTERS: dict[tuple[str, str], Converter] = {}


def register_converter(source: str, model_type: str) -> Callable[[Converter], Converter]:
    """Decorator: ``fn`` converts ``source`` state dicts for models of ``model_type``."""

    def decorator(fn: Converter) -> Converter:
        old = CONVERTERS.get((source, model_type))
        if old is not None and old is not fn:
            raise ValueError(f"a {source} converter for {model_type!r} exists: {old.__qualname__}")
        CONVERTERS[(source, model_type)] = fn
        return fn

    return decorator


def rename_prefixes(
    state: Mapping[str, torch.Tensor], prefixes: tuple[tuple[str, str], ...], what: str
) -> dict[str, torch.Tensor]:
    """Rename keys by the first matching ``(old prefix, new prefix)``; others are errors."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for old, new in prefixes:
            if key.startswith(old):
                out[new + key[len(old) :]] = value
                break
        else:
            known = ", ".join(p for p, _ in prefixes)
            raise CheckpointError(f"{what}: unexpected key {key!r} (expected prefixes {known})")
    return out


SSD_PREFIXES = (
    ("backbone.", "backbone."),
    ("head.classification_head.module_list.", "head.cls_convs."),
    ("head.regression_head.module_list.", "head.box_convs."),
)


FPN_DENSE_PREFIXES = (
    ("backbone.body.", "backbone.body."),
    ("backbone.fpn.", "neck.fpn."),
    ("head.", "head."),
)
"""torchvision RetinaNet / FCOS (ResNet-FPN) → ``single_shot`` with an ``fpn`` neck."""


@register_converter("torchvision", "single_shot")
def convert_torchvision_ssd(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision SSD, RetinaNet or FCOS state dict → ``single_shot`` (prefix renames).

    SSD (``ssd300_vgg16`` / ``ssd512``, ``vgg16_ssd`` backbone): backbone keys are identical;
    the head's ``classification_head.module_list.<l>`` and ``regression_head.module_list.<l>``
    become ``ssd_head``'s ``cls_convs.<l>`` and ``box_convs.<l>``. RetinaNet / FCOS
    (``retinanet_resnet50_fpn``, ``fcos_resnet50_fpn``; recognised by ``backbone.fpn.*``):
    ``backbone.body.*`` stays, ``backbone.fpn.*`` becomes the ``fpn`` neck's ``neck.fpn.*``
    (P6/P7 included), ``head.*`` stays (``retinanet_head`` / ``fcos_head`` use torchvision's
    names). Tensors are shared, not copied.
    """
    if any(key.startswith("backbone.fpn.") for key in state):
        return rename_prefixes(state, FPN_DENSE_PREFIXES, "torchvision RetinaNet/FCOS state dict")
    return rename_prefixes(state, SSD_PREFIXES, "torchvision SSD state dict")


_BN_COUNTER = ".num_batches_tracked"


def reconcile_batchnorm(
    state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Fit BatchNorm2d ↔ FrozenBatchNorm2d states: they differ only in ``num_batches_tracked``.

    torchvision builds ``nn.BatchNorm2d`` when no pretrained weights are asked for
    (``weights=None``) and ``FrozenBatchNorm2d`` otherwise; both keep ``weight``, ``bias``,
    ``running_mean`` and ``running_var``. A ``*.num_batches_tracked`` counter the ``target``
    (the model's state dict) lacks is dropped; one the target has and ``state`` lacks is
    filled with 0 when the same layer's ``running_mean`` is in ``state``. Other keys pass.
    """
    out = {k: v for k, v in state.items() if not (k.endswith(_BN_COUNTER) and k not in target)}
    for key, value in target.items():
        prefix = key[: -len(_BN_COUNTER)]
        if key.endswith(_BN_COUNTER) and key not in out and prefix + ".running_mean" in out:
            out[key] = torch.zeros_like(value)
    return out


def convert_weights(source: str, src: str | Path, spec: Spec, out: str | Path) -> Path:
    """Convert the ``source``-format state dict file ``src`` for ``spec``'s model into ``out``.

    ``src`` is read with ``weights_only=True`` (a bare state dict, or one under ``"model"``).
    BatchNorm2d and FrozenBatchNorm2d sources both fit (``reconcile_batchnorm``).
    The checkpoint holds ``model`` (the model's full state dict after loading the converted
    tensors), ``spec`` (the merged spec) and ``converted_from``. Raises ``CheckpointError``
    when no converter exists or the converted tensors do not fit the model exactly.
    """
    model = build_model(spec)
    key = (source, spec.model.type)
    converter = CONVERTERS.get(key)
    if converter is None:
        known = ", ".join(f"{s}:{m}" for s, m in sorted(CONVERTERS)) or "none"
        raise CheckpointError(
            f"no {source} converter for model type {spec.model.type!r} (known: {known})"
        )
    data = read_checkpoint(src)
    state = data["model"] if isinstance(data.get("model"), Mapping) else data
    converted = reconcile_batchnorm(converter(state), model.state_dict())
    check_state_fits(model, converted, str(src))
    model.load_state_dict(converted)
    return save_checkpoint(
        out,
        {
            "model": model.state_dict(),
            "spec": spec.to_dict(),
            "converted_from": {"source": source, "file": Path(src).name},
        },
    )
