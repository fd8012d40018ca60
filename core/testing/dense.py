"""Conformance checks for the dense-detector roles (``core/interfaces/dense.py``) and matchers.

The checks are registered at the bottom. The inputs are a
small batch on a 64×80 image: anchors on three levels (strides 8, 16, 32, one per location),
a padded ``GroundTruth`` of two images whose second has no box, an ``Assignment`` with
positive, background and ignored anchors, and ``DenseTargets.from_assignment`` encoded with the
coder the component declares (``kit_box_coder``: ``delta_xywh`` unless it says otherwise, e.g.
the YOLO loss's ``yolo``) — what the ``single_shot`` skeleton hands its collaborators.
The anchors are centred on their level's grid cells, as the skeleton's generators place them.
Predictions follow each component's declared ``DenseLayout``: ``cls_logits`` with C+1
columns (background column 0) or C, and the extra keys it lists (``objectness``,
``centerness``...); a component accepting either logit layout is checked with both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import torch

from ..interfaces.dense import DenseLayout, DenseTargets
from ..interfaces.matching import Anchors, Assignment, GroundTruth, Matcher, batched_box_iou
from ..registry import registry_for
from .kit import register_checks
from .roles import check_detections, check_loss_terms

_C = 3  # classes (without background) for components that do not fix them
IMAGE = (64, 80)  # (H, W) of the batch tensor
STRIDES = (8, 16, 32)


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _level_sizes(levels: int) -> list[tuple[int, int]]:
    """Feature sizes ``(h, w)`` of ``levels`` levels, fine → coarse (8×10, 4×5, 2×2, 1×1...)."""
    return [(max(8 >> i, 1), max(10 >> i, 1)) for i in range(levels)]


def dense_anchors() -> Anchors:
    """One square anchor (side 2·stride) per location of each level of ``IMAGE``: ``[106,4]``."""
    levels = []
    for stride in STRIDES:
        h, w = -(-IMAGE[0] // stride), -(-IMAGE[1] // stride)
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        centres = (torch.stack([xs, ys], -1).reshape(-1, 2).float() + 0.5) * stride
        levels.append(torch.cat([centres - stride, centres + stride], -1))
    return Anchors(torch.cat(levels), tuple(len(x) for x in levels), STRIDES)


def padded_gt(num_classes: int = _C) -> GroundTruth:
    """Two images, G = 3: the first has two boxes and a padded row, the second no box."""
    boxes = torch.zeros(2, 3, 4)
    boxes[0, 0] = torch.tensor([6.0, 4, 30, 26])
    boxes[0, 1] = torch.tensor([28.0, 20, 76, 60])
    labels = torch.full((2, 3), -1, dtype=torch.int64)
    labels[0, :2] = torch.tensor([1, num_classes])
    valid = labels > 0
    return GroundTruth(boxes, labels, valid)


def iou_assignment(anchors: Anchors, gt: GroundTruth) -> Assignment:
    """IoU >= 0.4 positive, 0.25..0.4 ignored (-2), else background; each valid gt also takes
    its best anchor. Per-anchor weights in 0.5..1 (losses must accept them)."""
    iou = batched_box_iou(gt.boxes, gt.valid, anchors.boxes)  # [B,G,A]
    b, a = iou.shape[0], iou.shape[2]
    matched = torch.full((b, a), Matcher.BACKGROUND, dtype=torch.int64)
    if iou.shape[1]:
        best, index = iou.max(dim=1)
        matched = torch.where(best >= 0.25, Matcher.IGNORE, matched)
        matched = torch.where(best >= 0.4, index, matched)
        rows, cols = gt.valid.nonzero(as_tuple=True)
        matched[rows, iou[rows, cols].argmax(dim=1)] = cols
    weights = 0.5 + 0.5 * torch.rand(b, a, generator=_gen())
    return Assignment(matched, weights)


def kit_coder(component: Any = None) -> Any:
    """The box coder ``component`` declares in ``kit_box_coder`` (default ``delta_xywh``)."""
    spec = dict(getattr(component, "kit_box_coder", {"type": "delta_xywh"}))
    return registry_for("box_coder").get(spec.pop("type")).build(**spec)


def dense_targets(num_classes: int = _C, *, empty: bool = False, coder: Any = None) -> DenseTargets:
    """``DenseTargets`` of the kit's batch (``empty``: no gt in the whole batch, G = 0),
    encoded with ``coder`` (default ``delta_xywh``)."""
    anchors, gt = dense_anchors(), padded_gt(num_classes)
    if empty:
        gt = GroundTruth(gt.boxes[:, :0], gt.labels[:, :0], gt.valid[:, :0])
    coder = coder if coder is not None else kit_coder()
    assignment = iou_assignment(anchors, gt)
    return DenseTargets.from_assignment(anchors, gt, assignment, coder, num_classes)


def dense_predictions(
    a: int,
    columns: int,
    *,
    batch: int = 2,
    grad: bool = False,
    extra: Mapping[str, tuple[int, ...]] | None = None,
) -> dict[str, torch.Tensor]:
    """``cls_logits [B,A,columns]``, ``bbox_deltas [B,A,4]`` (small, so decoding is sane) and
    each ``extra`` key ``[B,A,*shape]`` (logits, like the class scores)."""
    g = _gen()
    out = {
        "cls_logits": torch.randn(batch, a, columns, generator=g) * 3,
        "bbox_deltas": torch.randn(batch, a, 4, generator=g) * 0.5,
    }
    for key, shape in (extra or {}).items():
        out[key] = torch.randn(batch, a, *shape, generator=g) * 2
    return {k: v.requires_grad_(grad) for k, v in out.items()}


def logit_columns(component: DenseLayout, cfg: Any, num_classes: int = _C) -> tuple[int, ...]:
    """The ``cls_logits`` widths ``component`` declares for C = ``num_classes``: C+1 with a
    background column, C without, both when it accepts either."""
    background = component.background_column(cfg)
    if background is None:
        return (num_classes + 1, num_classes)
    return (num_classes + int(background),)


def _layout(component: Any, cfg: Any) -> Mapping[str, tuple[int, ...]]:
    keys = component.extra_keys(cfg)
    assert isinstance(keys, Mapping) and all(
        isinstance(k, str) and isinstance(v, tuple) for k, v in keys.items()
    ), (
        f"{type(component).__name__}: extra_keys(cfg) maps each extra prediction key to its "
        f"shape after [B,A] (a tuple), got {keys!r}"
    )
    return keys


# -------------------------------------------------------------------------------------- heads


def _check_dense_outputs(
    out: Any, a: int, columns: tuple[int, ...], extra: Mapping[str, tuple[int, ...]]
) -> None:
    """A head's dict for a batch of 2: ``cls_logits [2,A,K]`` (K in ``columns``),
    ``bbox_deltas [2,A,4]``, each declared ``extra`` key ``[2,A,*shape]`` and no other key,
    every tensor finite."""
    assert isinstance(out, dict), f"a dense head returns a dict, got {type(out)}"
    for key in ("cls_logits", "bbox_deltas", *extra):
        assert key in out, f"missing output {key!r}; got {sorted(out)}"
    undeclared = sorted(set(out) - {"cls_logits", "bbox_deltas", *extra})
    assert not undeclared, f"outputs {undeclared} are not declared in the head's extra_keys"
    for key, shape in extra.items():
        got = tuple(out[key].shape)
        assert got == (2, a, *shape), f"{key}: shape {got}, declared (2, {a}, *{shape})"
    logits, deltas = out["cls_logits"], out["bbox_deltas"]
    assert logits.shape[:2] == (2, a) and logits.shape[2:] in [(k,) for k in columns], (
        f"cls_logits: shape {tuple(logits.shape)}, expected (2, {a}, K) with K in {columns}"
    )
    assert deltas.shape == (2, a, 4), (
        f"bbox_deltas: shape {tuple(deltas.shape)}, expected (2, {a}, 4)"
    )
    for key, value in out.items():
        if isinstance(value, torch.Tensor):
            assert value.shape[:2] == (2, a), f"{key}: shape {tuple(value.shape)} is not [B,A,...]"
            assert torch.isfinite(value).all(), f"{key} has NaN/Inf"


def check_dense_head(head: Any, cfg: Any) -> None:
    """``cls_logits [B,A,K]`` (K = C+1 with a declared background column, C without),
    ``bbox_deltas [B,A,4]``, the declared extra keys with their shapes and no undeclared key,
    all finite; A = Σ h_l·w_l·num_anchors[l]. In train mode the
    gradient reaches the parameters."""
    channels, per_location = tuple(cfg.in_channels), tuple(cfg.num_anchors)
    sizes = _level_sizes(len(channels))
    g = _gen()
    feats = {
        f"p{i}": torch.randn(2, c, *hw, generator=g)
        for i, (c, hw) in enumerate(zip(channels, sizes))
    }
    a = sum(h * w * n for (h, w), n in zip(sizes, per_location))
    columns, extra = logit_columns(head, cfg, cfg.num_classes), _layout(head, cfg)
    head.eval()
    with torch.no_grad():
        out = head(feats)
    _check_dense_outputs(out, a, columns, extra)
    head.train()
    out = head(feats)
    (out["cls_logits"].sum() + out["bbox_deltas"].sum()).backward()
    assert any(p.grad is not None for p in head.parameters()), "no gradient reaches the head"
    head.zero_grad(set_to_none=True)


# ------------------------------------------------------------------------------------- losses


def _ignored_get_no_gradient(loss: Any, targets: DenseTargets, predictions: dict) -> None:
    total = sum(loss(predictions, targets).values())
    grads = torch.autograd.grad(total, list(predictions.values()), allow_unused=True)
    ignored = targets.labels == -1
    for key, grad in zip(predictions, grads):
        if grad is not None:
            assert (grad[ignored] == 0).all(), f"ignored anchors (label -1) move {key}"


def _without_weights(targets: DenseTargets) -> DenseTargets:
    return attrs.evolve(targets, assignment=Assignment(targets.assignment.matched))


def check_dense_loss(loss: Any, cfg: Any) -> None:
    """Scalar finite ``loss_*`` terms reaching every prediction (``cls_logits``,
    ``bbox_deltas`` and the declared extra keys) for a batch whose second image has
    no box (with and without assignment weights); reaching ``cls_logits`` when the whole batch
    has no gt; ignored anchors get no gradient. Once per declared logit layout, with the box
    coder the loss declares."""
    coder = kit_coder(loss)
    targets = dense_targets(coder=coder)
    assert targets.positive.any() and (targets.labels == -1).any(), "kit batch lost its cases"
    a, extra = targets.labels.shape[1], _layout(loss, cfg)
    for columns in logit_columns(loss, cfg):

        def predict(columns: int = columns) -> dict[str, torch.Tensor]:
            return dense_predictions(a, columns, grad=True, extra=extra)

        for t in (targets, _without_weights(targets)):
            predictions = predict()
            check_loss_terms(loss(predictions, t), tuple(predictions.values()))
        _ignored_get_no_gradient(loss, targets, predict())
        predictions = predict()
        empty = loss(predictions, dense_targets(empty=True, coder=coder))
        check_loss_terms(empty, (predictions["cls_logits"],))


def check_box_loss(loss: Any, cfg: Any) -> None:
    """``forward(deltas, targets)`` → float ``[B,A]``, finite on every anchor, with a finite
    gradient to the deltas; also when the batch has no gt."""
    for empty in (False, True):
        targets = dense_targets(empty=empty)
        deltas = dense_predictions(targets.labels.shape[1], 1, grad=True)["bbox_deltas"]
        out = loss(deltas, targets)
        assert isinstance(out, torch.Tensor) and out.shape == targets.labels.shape, (
            f"a box loss returns a per-anchor [B,A] tensor {tuple(targets.labels.shape)}, got "
            f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out)}"
        )
        assert out.is_floating_point() and torch.isfinite(out).all(), "non-finite box loss"
        assert out.requires_grad, "the box loss does not depend on the deltas"
        (grad,) = torch.autograd.grad(out.sum(), deltas, allow_unused=True)
        assert grad is not None and torch.isfinite(grad).all(), "no finite gradient to deltas"


# ----------------------------------------------------------------------------- postprocessors


def check_dense_postprocessor(post: Any, cfg: Any) -> None:
    """B dicts: ``boxes [K,4]`` inside each image, ``scores [K]`` best first, ``labels [K]``
    int64 in 1..C; some detections for confident logits. Predictions in the declared layout
    (logit columns, extra keys), once per layout it accepts."""
    anchors = dense_anchors()
    sizes = [IMAGE, (48, 50)]
    for columns in logit_columns(post, cfg):
        predictions = dense_predictions(anchors.boxes.shape[0], columns, extra=_layout(post, cfg))
        with torch.no_grad():
            found = post(predictions, anchors, sizes)
        check_detections(found, 2, sizes, _C)
        for d in found:
            assert "labels" in d, f"a dense postprocessor gives labels; got {sorted(d)}"
        assert any(d["boxes"].shape[0] for d in found), "no detection from confident logits"


# ------------------------------------------------------------------------------------ matcher


def _matcher_gt() -> GroundTruth:
    """Three images, G = 4: all valid; two padded rows; every row invalid (e.g. crowd)."""
    g = _gen()
    xy = torch.rand(3, 4, 2, generator=g) * torch.tensor([48.0, 36])
    boxes = torch.cat([xy, xy + 12 + torch.rand(3, 4, 2, generator=g) * 20], -1)
    valid = torch.ones(3, 4, dtype=torch.bool)
    valid[1, 2:] = False
    valid[2] = False
    boxes[1, 2:] = 0
    labels = torch.randint(1, _C + 1, (3, 4), generator=g)
    labels[1, 2:] = -1
    return GroundTruth(boxes, labels, valid)


def _check_assignment(out: Any, b: int, a: int, g: int) -> torch.Tensor:
    assert isinstance(out, Assignment), f"a matcher returns an Assignment, got {type(out)}"
    matched = out.matched
    assert isinstance(matched, torch.Tensor) and matched.shape == (b, a), (
        f"Assignment.matched: shape {tuple(getattr(matched, 'shape', ()))}, expected ({b}, {a})"
    )
    assert matched.dtype == torch.int64, f"Assignment.matched: dtype {matched.dtype}, not int64"
    assert ((matched >= -2) & (matched < g)).all(), f"matched outside {{-2,-1}} ∪ [0,{g})"
    if out.weights is not None:
        w = out.weights
        assert w.shape == (b, a) and w.is_floating_point(), f"weights {tuple(w.shape)}"
        assert torch.isfinite(w).all(), "non-finite Assignment.weights"
    return matched


def check_matcher(matcher: Any) -> None:
    """``Assignment.matched`` int64 [B,A] in {-2,-1} ∪ [0,G); padded / invalid gt rows never
    match; background everywhere for an image whose gt are all invalid and for G = 0; weights
    None or finite [B,A]; batch == per image; ``[A,4]`` anchors in 3 levels with strides and
    the same anchors per image ``[B,A,4]`` give the same answer. Predictions are passed.
    A matcher that reads set predictions (``reads_set_predictions``) gets the set check."""
    if getattr(matcher, "reads_set_predictions", False):
        from .set_prediction import check_set_matcher

        return check_set_matcher(matcher)
    anchors, gt = dense_anchors(), _matcher_gt()
    a = anchors.boxes.shape[0]
    predictions = dense_predictions(a, _C + 1, batch=3)
    matched = _check_assignment(matcher(anchors, gt, predictions=predictions), 3, a, 4)
    assert (matched >= 0).any(), "no anchor matched any gt box"
    assert not (matched[1] >= 2).any(), "padded gt rows must never match"
    assert (matched[2] == Matcher.BACKGROUND).all(), "all gt invalid must give background (-1)"
    for i in range(3):
        one = {k: v[i : i + 1] for k, v in predictions.items()}
        single = matcher(anchors, gt.slice(i, i + 1), predictions=one).matched[0]
        assert torch.equal(single, matched[i]), "batched != per-image"
    per_image = Anchors(anchors.boxes.expand(3, -1, -1), anchors.num_per_level, anchors.strides)
    again = _check_assignment(matcher(per_image, gt, predictions=predictions), 3, a, 4)
    assert torch.equal(again, matched), "[B,A,4] anchors (the same per image) != [A,4] anchors"
    empty = GroundTruth(gt.boxes[:2, :0], gt.labels[:2, :0], gt.valid[:2, :0])
    two = {k: v[:2] for k, v in predictions.items()}
    none = _check_assignment(matcher(anchors, empty, predictions=two), 2, a, 0)
    assert (none == Matcher.BACKGROUND).all(), "zero gt must give background (-1)"


register_checks(
    roles={
        "dense_head": check_dense_head,
        "dense_loss": check_dense_loss,
        "box_loss": check_box_loss,
        "dense_postprocessor": check_dense_postprocessor,
    },
    kinds={"matcher": check_matcher},
)
