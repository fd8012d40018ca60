"""Run-time checks of what a slot's component returns, naming the slot and its provider.

The conformance kit checks a component on the kit's inputs; a skeleton checks, on every call,
what each collaborator returns where that is cheap and needs no host-device sync (keys, shapes,
dtypes: tensor metadata). Values are not read (that would sync): a matched index past the gt
fails in the gather that uses it, and ``Slot.blames`` turns that ``IndexError`` into the slot's
error. A violation is a ``PluginError`` (exit 2 in the tools)::

    model.loss (quality_focal from myplug): loss_qfl is [4,341], expected a scalar
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn

import attrs
import torch

from .errors import PluginError
from .interfaces.matching import Assignment
from .interfaces.set_prediction import Proposer, SetDecoding
from .registry import registry_for


@attrs.frozen
class Slot:
    """A built slot: its key path, the registered type filling it and that type's provider."""

    path: str
    type: str
    provider: str

    @classmethod
    def of(cls, kind: str, node: Any, default_path: str) -> Slot:
        """The slot of ``node`` (a validated ``ComponentSpec`` or plain ``{"type": ...}``)."""
        path = getattr(node, "path", None) or default_path
        name = getattr(node, "type", None) or (
            node.get("type") if isinstance(node, Mapping) else ""
        )
        try:
            provider = registry_for(kind).get(name).provider
        except Exception:  # a name that does not resolve was refused at validation already
            provider = "?"
        return cls(path, str(name), provider)

    def __str__(self) -> str:
        return f"{self.path} ({self.type} from {self.provider})"

    def fail(self, message: str) -> NoReturn:
        raise PluginError(f"{self}: {message}")

    @contextmanager
    def blames(self, what: str) -> Iterator[None]:
        """Turn an ``IndexError`` raised in the block (an index the component returned is out of
        range; raised on CPU, a device-side assert on GPU) into this slot's error."""
        try:
            yield
        except IndexError as error:
            self.fail(f"{what} ({error})")


def _shape(t: Any) -> str:
    if isinstance(t, torch.Tensor):
        return "[" + ",".join(str(d) for d in t.shape) + "]" if t.dim() else "a scalar"
    return type(t).__name__


def check_loss_terms(slot: Slot, terms: Any) -> dict[str, torch.Tensor]:
    """A loss's return: a dict of floating scalar tensors whose keys start with ``loss_``."""
    if not isinstance(terms, Mapping) or not terms:
        slot.fail(f"returned {type(terms).__name__}, expected a non-empty dict of loss_* terms")
    for key, value in terms.items():
        if not isinstance(key, str) or not key.startswith("loss_"):
            slot.fail(f"returned a term {key!r}; every term's key starts with 'loss_'")
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            slot.fail(f"{key} is {_shape(value)}, expected a scalar")
        if not value.is_floating_point():
            slot.fail(f"{key} has dtype {value.dtype}, expected a floating scalar")
    return dict(terms)


def check_assignment(slot: Slot, out: Any, batch: int, anchors: int) -> Assignment:
    """A matcher's return: an ``Assignment`` with ``matched`` int64 ``[B,A]`` and ``weights``
    None or ``[B,A]`` (the values, ``-2..G-1``, are checked where they are gathered)."""
    if not isinstance(out, Assignment):
        slot.fail(f"returned {type(out).__name__}, expected an Assignment")
    matched = out.matched
    expected = f"[{batch},{anchors}]"
    if not isinstance(matched, torch.Tensor) or tuple(matched.shape) != (batch, anchors):
        slot.fail(f"Assignment.matched is {_shape(matched)}, expected {expected} (B, A)")
    if matched.dtype != torch.int64:
        slot.fail(f"Assignment.matched has dtype {matched.dtype}, expected torch.int64")
    w = out.weights
    if w is not None and (not isinstance(w, torch.Tensor) or tuple(w.shape) != (batch, anchors)):
        slot.fail(f"Assignment.weights is {_shape(w)}, expected None or {expected}")
    return out


def check_dense_predictions(
    slot: Slot, out: Any, batch: int, keys: Mapping[str, tuple[int, ...]]
) -> dict[str, torch.Tensor]:
    """A dense head's return: ``cls_logits [B,A,K]``, ``bbox_deltas [B,A,4]`` and each declared
    extra key ``[B,A,*shape]``, all with the same A."""
    if not isinstance(out, Mapping):
        slot.fail(f"returned {type(out).__name__}, expected a dict of prediction tensors")
    for key in ("cls_logits", "bbox_deltas", *keys):
        if not isinstance(out.get(key), torch.Tensor):
            slot.fail(f"returned no tensor {key!r} (it has {sorted(out)})")
    a = out["cls_logits"].shape[1] if out["cls_logits"].dim() == 3 else -1
    wanted = {"cls_logits": None, "bbox_deltas": (4,), **keys}
    for key, tail in wanted.items():
        t = out[key]
        ok = t.dim() >= 2 and tuple(t.shape[:2]) == (batch, a)
        if tail is not None:
            ok = ok and tuple(t.shape[2:]) == tuple(tail)
        if not ok:
            shape = "K" if tail is None else ",".join(map(str, tail))
            suffix = f",{shape}" if shape else ""
            slot.fail(f"{key} is {_shape(t)}, expected [{batch},A{suffix}] (A as cls_logits)")
    return dict(out)


def check_detections(slot: Slot, out: Any, batch: int) -> list[dict[str, torch.Tensor]]:
    """A postprocessor's return: B dicts with ``boxes [K,4]``, ``scores [K]``, ``labels [K]``
    int64 (the same K in each dict)."""
    if not isinstance(out, list) or len(out) != batch:
        got = f"a list of {len(out)}" if isinstance(out, list) else type(out).__name__
        slot.fail(f"returned {got}, expected a list of {batch} result dicts (one per image)")
    for i, d in enumerate(out):
        boxes, scores, labels = (d.get(k) if isinstance(d, Mapping) else None for k in
                                 ("boxes", "scores", "labels"))  # fmt: skip
        if not all(isinstance(t, torch.Tensor) for t in (boxes, scores, labels)):
            slot.fail(f"result {i} lacks tensors boxes, scores and labels")
        k = boxes.shape[0]
        if tuple(boxes.shape) != (k, 4) or tuple(scores.shape) != (k,) or labels.shape != (k,):
            slot.fail(
                f"result {i}: boxes {_shape(boxes)}, scores {_shape(scores)}, labels "
                f"{_shape(labels)}, expected [K,4], [K], [K]"
            )
        if labels.dtype != torch.int64:
            slot.fail(f"result {i}: labels have dtype {labels.dtype}, expected torch.int64")
    return out


def check_set_predictions(
    slot: Slot, out: Any, layers: int, batch: int, queries: int
) -> dict[str, torch.Tensor]:
    """A set head's return: ``logits [L,B,Q,K]`` and ``boxes [L,B,Q,4]``."""
    if not isinstance(out, Mapping):
        slot.fail(f"returned {type(out).__name__}, expected a dict of prediction tensors")
    for key in ("logits", "boxes"):
        if not isinstance(out.get(key), torch.Tensor):
            slot.fail(f"returned no tensor {key!r} (it has {sorted(out)})")
    lead = (layers, batch, queries)
    expected = f"[{layers},{batch},{queries}"
    if out["logits"].dim() != 4 or tuple(out["logits"].shape[:3]) != lead:
        slot.fail(f"logits is {_shape(out['logits'])}, expected {expected},K] (L, B, Q, K)")
    if tuple(out["boxes"].shape) != (*lead, 4):
        slot.fail(f"boxes is {_shape(out['boxes'])}, expected {expected},4] cxcywh")
    return dict(out)


def check_decoding(
    slot: Slot, out: Any, layers: int, batch: int, queries: int, training: bool = False
) -> SetDecoding:
    """A set transformer's return: a ``SetDecoding`` whose ``hidden`` is ``[L,B,G·Q,D]``, G its
    ``groups`` (an int >= 1, and 1 unless ``training``: eval mode decodes group 0 only)."""
    if not isinstance(out, SetDecoding):
        slot.fail(f"returned {type(out).__name__}, expected a SetDecoding")
    groups = out.groups
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        slot.fail(f"SetDecoding.groups is {groups!r}, expected an int >= 1 (query groups)")
    if groups != 1 and not training:
        slot.fail(
            f"SetDecoding.groups is {groups} in eval mode, expected 1 (a transformer with "
            "query groups decodes group 0 alone outside training)"
        )
    hidden = out.hidden
    total = groups * queries
    if (
        not isinstance(hidden, torch.Tensor)
        or hidden.dim() != 4
        or (tuple(hidden.shape[:3]) != (layers, batch, total))
    ):
        what = f"{queries} queries" if groups == 1 else f"{groups} groups x {queries} queries"
        slot.fail(
            f"SetDecoding.hidden is {_shape(hidden)}, expected [{layers},{batch},{total},D] "
            f"(decoder layers, images, {what}, width)"
        )
    logits, boxes = out.encoder_logits, out.encoder_boxes
    if logits is None and boxes is None:
        return out
    if groups != 1:
        slot.fail(
            f"SetDecoding has {groups} query groups and two-stage encoder proposals; the "
            "skeleton matches encoder proposals only for one query group"
        )
    if (
        not isinstance(logits, torch.Tensor)
        or not isinstance(boxes, torch.Tensor)
        or logits.dim() != 3
        or logits.shape[0] != batch
        or tuple(boxes.shape) != (*logits.shape[:2], 4)
    ):
        slot.fail(
            f"SetDecoding.encoder_logits is {_shape(logits)} and encoder_boxes "
            f"{_shape(boxes)}, expected [{batch},S,K] and [{batch},S,4] cxcywh (both or neither)"
        )
    return out


def checked_proposer(slot: Slot, propose: Proposer) -> Proposer:
    """``propose`` (a set head's ``proposer()``) whose every return is checked: a dict with
    ``logits [B,S,K]``, ``boxes [B,S,4]`` and ``scores [B,S]`` for ``proposals [B,S,4]``; a
    wrong one is this slot's error (the transformer calling it has no slot of its own)."""

    def run(query: torch.Tensor, proposals: torch.Tensor) -> dict[str, torch.Tensor]:
        out = propose(query, proposals)
        lead = tuple(proposals.shape[:2])
        got = {
            k: _shape(out.get(k)) for k in ("logits", "boxes", "scores")
        } if isinstance(out, dict) else type(out).__name__  # fmt: skip
        if (
            not isinstance(out, dict)
            or not all(isinstance(out.get(k), torch.Tensor) for k in ("logits", "boxes", "scores"))
            or out["logits"].dim() != 3
            or tuple(out["logits"].shape[:2]) != lead
            or tuple(out["boxes"].shape) != (*lead, 4)
            or tuple(out["scores"].shape) != lead
        ):
            b, n = lead
            slot.fail(
                f"proposer() returned {got}, expected logits [{b},{n},K], boxes [{b},{n},4] "
                f"cxcywh and scores [{b},{n}] for the {n} encoder proposals"
            )
        return out

    return run
