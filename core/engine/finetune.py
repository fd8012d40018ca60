"""Fine-tuning from another run's weights, and checkpoint mismatches explained by their specs.

``load_matching(model, path)`` is ``train.load_from``: every tensor of the checkpoint whose
name and shape fit the model is loaded, the rest is reported in one line grouped by prefix
("skipped 10 tensors: head.cls_convs.*.{weight,bias} (10 tensors, e.g.
head.cls_convs.0.weight: checkpoint 16x32x3x3 vs model 12x32x3x3)"); training then starts
fresh (epoch 0, new optimizer).

``check_spec_matches(data, spec, path)`` compares the resolved spec stored in a checkpoint with
the spec in use, so a checkpoint of another model is refused with one sentence ("checkpoint
is two_stage / mobilenet_v3_large (3 classes), spec is single_shot / tiny_ssd_base (3
classes)") instead of a list of keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from torch import nn

from ..checkpoint import model_state, read_checkpoint
from ..errors import CheckpointError


@attrs.frozen
class LoadReport:
    """What ``load_matching`` did: tensor counts and the one-line summary."""

    loaded: int
    total: int
    skipped: tuple[str, ...]
    line: str


def load_matching(model: nn.Module, path: str | Path, *, exclude: Sequence[str] = ()) -> LoadReport:
    """Load the tensors of checkpoint ``path`` (weights-only) whose names and shapes fit
    ``model``; the others keep their initial values. Tensors whose model name matches one
    of the ``exclude`` regexes (``re.search``, ``train.load_exclude``) are not loaded either:
    they keep the model's fresh initialisation (a re-initialised output layer). A checkpoint
    that fits nothing is a CheckpointError (not a checkpoint of a related model); so is an
    ``exclude`` pattern that matches no tensor of the model (a typo)."""
    state = model_state(read_checkpoint(path))
    own = model.state_dict()
    excluded = _excluded(own, exclude)
    state = {k: v for k, v in state.items() if k not in excluded}
    fits = {
        k: v
        for k, v in state.items()
        if k in own and hasattr(v, "shape") and tuple(v.shape) == tuple(own[k].shape)
    }
    if not fits:
        raise CheckpointError(
            f"{path}: train.load_from: no tensor of the checkpoint fits the model "
            f"({type(model).__name__}: names like {', '.join(list(own)[:3])}; checkpoint: "
            f"{', '.join(list(state)[:3]) or 'empty'})"
        )
    model.load_state_dict(fits, strict=False)
    mismatched = [k for k in own if k in state and k not in fits]  # in model order
    unused = [k for k in state if k not in own]
    fresh = [k for k in own if k not in state]
    fresh = [k for k in fresh if k not in excluded]
    parts = [f"load_from {path}: loaded {len(fits)} of {len(own)} model tensors"]
    if excluded:
        parts.append(f"re-initialised by load_exclude ({len(excluded)}): {_grouped(excluded)}")
    if mismatched:
        parts.append(f"skipped {len(mismatched)} tensors: {_grouped(mismatched, state, own)}")
    if fresh:
        parts.append(f"not in the checkpoint ({len(fresh)}, initialised): {_grouped(fresh)}")
    if unused:
        parts.append(f"not in the model ({len(unused)}): {_grouped(unused)}")
    skipped = tuple(mismatched + fresh + excluded)
    return LoadReport(len(fits), len(own), skipped, "; ".join(parts))


def _excluded(own: Mapping[str, Any], patterns: Sequence[str]) -> list[str]:
    """Names of ``own`` matching any of ``patterns``; a pattern matching none is an error."""
    compiled = [re.compile(p) for p in patterns]
    unused = [p.pattern for p in compiled if not any(p.search(k) for k in own)]
    if unused:
        raise CheckpointError(
            f"train.load_exclude: pattern(s) {unused} match no tensor of the model (names look "
            f"like {', '.join(list(own)[:3])})"
        )
    return [k for k in own if any(p.search(k) for p in compiled)]


def _grouped(
    names: list[str], state: Mapping[str, Any] | None = None, own: Mapping[str, Any] | None = None
) -> str:
    """Names grouped by prefix, numbered parts as ``*``: ``head.cls_convs.*.{weight,bias}
    (10 tensors, e.g. head.cls_convs.0.weight: checkpoint 16x32x3x3 vs model 12x32x3x3)``."""
    groups: dict[str, list[str]] = {}
    for name in names:
        parts = ["*" if p.isdigit() else p for p in name.split(".")]
        groups.setdefault(".".join(parts[:-1]), []).append(name)
    out = []
    for prefix, members in groups.items():
        leaves = list(dict.fromkeys(m.rpartition(".")[2] for m in members))
        leaf_text = leaves[0] if len(leaves) == 1 else "{" + ",".join(leaves) + "}"
        text = f"{prefix}.{leaf_text}" if prefix else leaf_text
        first = members[0]
        shape = ""
        if state is not None and own is not None:
            shape = f": checkpoint {_shape(state[first])} vs model {_shape(own[first])}"
        if len(members) > 1:
            text += f" ({len(members)} tensors, e.g. {first}{shape})"
        elif shape:
            text += f" ({shape[2:]})"
        out.append(text)
    shown = out[:6] + ([f"... {len(out) - 6} more groups"] if len(out) > 6 else [])
    return ", ".join(shown)


def _shape(tensor: Any) -> str:
    return "x".join(str(s) for s in tensor.shape) or "scalar"


def describe_model(plain_spec: Mapping[str, Any] | None) -> str | None:
    """``"single_shot / tiny_ssd_base (3 classes)"`` from a plain spec's model section."""
    model = (plain_spec or {}).get("model")
    if not isinstance(model, Mapping) or "type" not in model:
        return None
    text = str(model["type"])
    backbone = model.get("backbone")
    if isinstance(backbone, Mapping) and "type" in backbone:
        text += f" / {backbone['type']}"
    if "num_classes" in model:
        text += f" ({model['num_classes']} classes)"
    return text


def check_spec_matches(data: Mapping[str, Any], spec_dict: Mapping[str, Any], path: Any) -> None:
    """Raise CheckpointError in one sentence when the checkpoint's stored spec describes
    another model (type, backbone or ``num_classes``) than ``spec_dict``; nothing when the
    checkpoint stores no spec (converted or bare weights) or the two agree."""
    theirs, ours = describe_model(data.get("spec")), describe_model(spec_dict)
    if theirs is None or ours is None or theirs == ours:
        return
    message = f"{path}: checkpoint is {theirs}, spec is {ours}"
    a = data["spec"]["model"].get("num_classes")
    b = spec_dict["model"].get("num_classes")
    if a != b and theirs.split(" (")[0] == ours.split(" (")[0]:
        message += (
            f": num_classes {a} in the checkpoint vs {b} in the spec (to fine-tune for "
            f"{b} classes, start a run with train.load_from: {path})"
        )
    raise CheckpointError(message)
