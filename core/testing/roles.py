"""Conformance checks for the role interfaces (``core/interfaces/roles.py``) and whole models.

The checks are registered at the bottom: ``check_entry`` runs the check of every role a
component implements, with inputs built from the role's
signature and sized from the component's config (injected ``in_channels``, ``num_classes``,
...), and the ``model`` check runs a forward pass on a tiny batch in train and eval mode.

Losses: a dict of scalar, finite, floating ``loss_*`` terms; the gradient reaches the
prediction inputs; finite (and differentiable) when nothing is positive or nothing is given.
"""

from __future__ import annotations

from typing import Any

import torch

from ..interfaces.matching import Anchors
from .kit import register_checks

_C = 3  # classes (without background) for components that do not fix them


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _randn(*shape: int, grad: bool = False) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen()).requires_grad_(grad)


def _boxes(n: int, size: tuple[int, int] = (64, 80), *shape: int) -> torch.Tensor:
    """Valid xyxy boxes ``[*shape, n, 4]`` inside an image of ``size`` (H, W)."""
    g = _gen()
    h, w = size
    xy = torch.rand(*shape, n, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
    wh = 4 + torch.rand(*shape, n, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3])
    return torch.cat([xy, xy + wh], -1)


def check_loss_terms(
    out: Any, inputs: tuple[torch.Tensor, ...] = (), *, exactly_one: bool = False
) -> None:
    """``out`` is a dict of finite scalar ``loss_*`` terms whose sum reaches every tensor of
    ``inputs`` that requires grad (clears their ``.grad`` afterwards)."""
    assert isinstance(out, dict) and out, f"a loss returns a non-empty dict, got {type(out)}"
    for key, value in out.items():
        assert isinstance(key, str) and key.startswith("loss_"), f"term {key!r} lacks loss_"
        assert isinstance(value, torch.Tensor) and value.dim() == 0, f"{key}: not a scalar"
        assert value.is_floating_point() and torch.isfinite(value), f"{key}: {value}"
    if exactly_one:
        assert len(out) == 1, f"this role returns exactly one term, got {sorted(out)}"
    wanting = [t for t in inputs if t.requires_grad]
    if not wanting:
        return
    total = sum(out.values())
    assert total.requires_grad, "the loss terms do not depend on the predictions"
    grads = torch.autograd.grad(total, wanting, allow_unused=True)
    for i, g in enumerate(grads):
        assert g is not None, f"no gradient reaches prediction input {i}"
        assert torch.isfinite(g).all(), f"non-finite gradient for prediction input {i}"


# -------------------------------------------------------------------------------------- heads


def _shape(out: dict, key: str, expected: tuple[int, ...]) -> None:
    assert key in out, f"missing output {key!r}; got {sorted(out)}"
    got = tuple(out[key].shape)
    assert got == expected, f"{key}: shape {got}, expected {expected}"


def check_rpn_head(head: Any, cfg: Any) -> None:
    """``objectness [B,A]``, ``bbox_deltas [B,A,4]``, ``num_anchors_per_level`` per level."""
    c, n = cfg.in_channels, cfg.num_anchors
    feats = {"a": _randn(2, c, 8, 10), "b": _randn(2, c, 4, 5)}
    head.eval()
    with torch.no_grad():
        out = head(feats)
    counts = [n * 80, n * 20]
    assert list(out["num_anchors_per_level"]) == counts, out["num_anchors_per_level"]
    _shape(out, "objectness", (2, sum(counts)))
    _shape(out, "bbox_deltas", (2, sum(counts), 4))
    assert torch.isfinite(out["objectness"]).all() and torch.isfinite(out["bbox_deltas"]).all()


def check_roi_box_head(head: Any, cfg: Any) -> None:
    """``cls_logits [R,C+1]``, ``bbox_deltas [R,(C+1)*4]``, also for R = 0."""
    c1 = cfg.num_classes + 1
    head.eval()
    for r in (3, 0):
        with torch.no_grad():
            out = head(_randn(r, cfg.in_channels, cfg.resolution, cfg.resolution))
        _shape(out, "cls_logits", (r, c1))
        _shape(out, "bbox_deltas", (r, c1 * 4))
        assert torch.isfinite(out["cls_logits"]).all()


def check_roi_mask_head(head: Any, cfg: Any) -> None:
    """``mask_logits [R,C+1,M,M]`` (square), also for R = 0."""
    head.eval()
    shapes = []
    for r in (3, 0):
        with torch.no_grad():
            logits = head(_randn(r, cfg.in_channels, 7, 7))["mask_logits"]
        assert logits.dim() == 4 and logits.shape[:2] == (r, cfg.num_classes + 1), logits.shape
        assert logits.shape[2] == logits.shape[3], f"masks are square, got {logits.shape}"
        assert torch.isfinite(logits).all()
        shapes.append(logits.shape[2:])
    assert shapes[0] == shapes[1], shapes


def check_segmentation_head(head: Any, cfg: Any) -> None:
    """``{"logits": [B,C+1,H,W]}`` at ``image_size``, or at the feature size × stride."""
    feats = {cfg.in_feature: _randn(2, cfg.in_channels, 5, 6)}
    head.eval()
    with torch.no_grad():
        sized = head(feats, (37, 45))["logits"]
        default = head(feats)["logits"]
    c1 = cfg.num_classes + 1
    assert sized.shape == (2, c1, 37, 45), sized.shape
    assert default.shape == (2, c1, 5 * cfg.stride, 6 * cfg.stride), default.shape
    assert torch.isfinite(sized).all()


# ------------------------------------------------------------------------------------- losses


def check_rpn_loss(loss: Any, cfg: Any) -> None:
    """Sampled anchors with positives; no positive (images without boxes); nothing sampled."""
    a = 40
    objectness, deltas = _randn(2, a, grad=True), _randn(2, a, 4, grad=True)
    targets = _randn(2, a, 4)
    positive = torch.zeros(2, a, dtype=torch.bool)
    positive[0, :5] = True
    negative = ~positive
    negative[:, -3:] = False
    check_loss_terms(loss(objectness, deltas, positive, negative, targets), (objectness, deltas))
    none = torch.zeros_like(positive)
    check_loss_terms(loss(objectness, deltas, none, negative, targets), (objectness,))
    check_loss_terms(loss(objectness, deltas, none, none, targets))


def check_roi_box_loss(loss: Any, cfg: Any) -> None:
    """Sampled RoIs with positives; only background; no RoI at all."""
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    r = labels.numel()
    logits, deltas = _randn(r, _C + 1, grad=True), _randn(r, (_C + 1) * 4, grad=True)
    targets = _randn(r, 4)
    check_loss_terms(loss(logits, deltas, labels, targets), (logits, deltas))
    check_loss_terms(loss(logits, deltas, torch.zeros_like(labels), targets), (logits,))
    empty = (_randn(0, _C + 1, grad=True), _randn(0, (_C + 1) * 4, grad=True))
    check_loss_terms(loss(*empty, labels[:0], targets[:0]))


def check_mask_loss(loss: Any, cfg: Any) -> None:
    """Positive RoIs with mask targets; no positive RoI."""
    logits = _randn(3, _C + 1, 14, 14, grad=True)
    targets = torch.rand(3, 14, 14, generator=_gen())
    check_loss_terms(loss(logits, torch.tensor([1, 2, 3]), targets), (logits,))
    empty = _randn(0, _C + 1, 14, 14, grad=True)
    check_loss_terms(loss(empty, torch.zeros(0, dtype=torch.int64), targets[:0]))


def check_segmentation_loss(loss: Any, cfg: Any) -> None:
    """One term; labelled and ignored pixels; every pixel ignored."""
    ignore = int(getattr(cfg, "ignore_index", 255))
    logits = _randn(2, _C + 1, 8, 8, grad=True)
    target = torch.randint(0, _C + 1, (2, 8, 8), generator=_gen())
    target[:, :2] = ignore
    check_loss_terms(loss(logits, target), (logits,), exactly_one=True)
    check_loss_terms(loss(logits, torch.full_like(target, ignore)), exactly_one=True)


def check_style_loss(loss: Any, cfg: Any) -> None:
    """``prepare`` on reference features, then one term whose gradient reaches the image's."""
    reference = {"a": _randn(1, 4, 8, 8), "b": _randn(1, 6, 4, 4)}
    targets = loss.prepare(reference)
    assert set(targets) == set(reference), sorted(targets)
    assert not any(t.requires_grad for t in targets.values()), "targets must be detached"
    features = {k: v.detach().clone().add_(0.1).requires_grad_(True) for k, v in reference.items()}
    check_loss_terms(loss(features, targets), tuple(features.values()), exactly_one=True)


def check_image_prior_loss(loss: Any, cfg: Any) -> None:
    """One term of an image ``[B,3,H,W]`` whose gradient reaches the image."""
    image = torch.rand(1, 3, 8, 9, generator=_gen()).requires_grad_(True)
    check_loss_terms(loss(image), (image,), exactly_one=True)


# ----------------------------------------------------------------------------- postprocessors


def check_detections(found: Any, b: int, sizes: list[tuple[int, int]], num_classes: int) -> None:
    """B dicts of ``boxes [K,4]`` inside the image, ``scores [K]`` best first, ``labels``."""
    assert isinstance(found, list) and len(found) == b, f"expected {b} result dicts"
    for d, (h, w) in zip(found, sizes):
        k = d["boxes"].shape[0]
        assert d["boxes"].shape == (k, 4) and d["scores"].shape == (k,), d["boxes"].shape
        assert (d["scores"][:-1] >= d["scores"][1:]).all(), "scores are not best first"
        boxes = d["boxes"]
        assert (boxes[:, 2:] >= boxes[:, :2]).all(), "boxes must be xyxy"
        assert (boxes >= -1e-4).all() and (boxes[:, 2] <= w + 1e-4).all(), "box outside image"
        assert (boxes[:, 3] <= h + 1e-4).all(), "box outside image"
        if "labels" in d:
            labels = d["labels"]
            assert labels.dtype == torch.int64 and labels.shape == (k,)
            assert ((labels >= 1) & (labels <= num_classes)).all(), labels


def check_proposal_generator(proposals: Any, cfg: Any) -> None:
    """Per-image proposals in the image, best first, in train and eval mode, from
    ``objectness [B,A]`` and ``bbox_deltas [B,A,4]`` at ``Anchors`` of two levels."""
    sizes = [(64, 80), (48, 50)]
    anchors = Anchors(_boxes(75, (48, 50)), (60, 15), (8, 16))
    predictions = {"objectness": _randn(2, 75), "bbox_deltas": _randn(2, 75, 4) * 0.1}
    for training in (True, False):
        found = proposals(predictions, anchors, sizes, training=training)
        check_detections(found, 2, sizes, 0)


def check_rcnn_postprocessor(post: Any, cfg: Any) -> None:
    """Detections per image with labels 1..C; nothing from padding; no proposal → none."""
    r, c1, sizes = 6, _C + 1, [(64, 80), (48, 50)]
    valid = torch.ones(2, r, dtype=torch.bool)
    valid[1, 2:] = False
    predictions = {
        "cls_logits": _randn(2, r, c1) * 4,
        "bbox_deltas": _randn(2, r, c1 * 4) * 0.1,
        "valid": valid,
    }
    refs = _boxes(r, (48, 50), 2)
    found = post(predictions, Anchors.single_level(refs), sizes)
    check_detections(found, 2, sizes, _C)
    empty = {k: v[:, :0] for k, v in predictions.items()}
    found = post(empty, Anchors.single_level(refs[:, :0]), sizes)
    check_detections(found, 2, sizes, _C)
    assert all(d["boxes"].shape[0] == 0 for d in found), "detections without proposals"


def check_mask_postprocessor(paste: Any, cfg: Any) -> None:
    """``masks [K,1,M,M]`` → ``[K,1,H,W]`` in 0..1; K = 0 gives ``[0,1,H,W]``."""
    sizes = [(40, 50), (30, 20)]
    results = [
        {"boxes": _boxes(2, (40, 50)), "masks": torch.rand(2, 1, 14, 14, generator=_gen())},
        {"boxes": torch.zeros(0, 4), "masks": torch.zeros(0, 1, 14, 14)},
    ]
    out = paste(results, sizes)
    assert out[0]["masks"].shape == (2, 1, 40, 50), out[0]["masks"].shape
    assert out[1]["masks"].shape == (0, 1, 30, 20), out[1]["masks"].shape
    masks = out[0]["masks"]
    assert ((masks >= 0) & (masks <= 1)).all() and masks.is_floating_point()


# -------------------------------------------------------------------------------------- models


def _num_classes(model: Any) -> int:
    n = getattr(model, "num_classes", None) or model.cfg.num_classes
    return int(n)


def tiny_batch(num_classes: int) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Two images (the second without boxes) and targets every model family reads: ``boxes``,
    ``labels``, ``iscrowd``, ``masks [N,H,W]`` uint8, ``semantic_mask [H,W]`` and the
    image-level ``label`` (int64 scalar 1..C) of classifiers."""
    g = _gen()
    images, targets = [], []
    for (h, w), n in (((64, 80), 2), ((56, 64), 0)):
        boxes = _boxes(n, (h, w))
        masks = torch.zeros(n, h, w, dtype=torch.uint8)
        semantic = torch.zeros(h, w, dtype=torch.int64)
        for i, box in enumerate(boxes.round().int()):
            masks[i, box[1] : box[3], box[0] : box[2]] = 1
            semantic[masks[i].bool()] = i % num_classes + 1
        images.append(torch.rand(3, h, w, generator=g))
        targets.append(
            {
                "boxes": boxes,
                "labels": torch.arange(n, dtype=torch.int64) % num_classes + 1,
                "iscrowd": torch.zeros(n, dtype=torch.int64),
                "masks": masks,
                "semantic_mask": semantic,
                "label": torch.tensor(len(images) % num_classes + 1),
            }
        )
    return images, targets


def check_classification_output(d: dict[str, torch.Tensor], num_classes: int) -> None:
    """``probs [C]`` summing to 1; ``labels [k]`` int64 1..C and ``scores [k]`` best first,
    the scores being the labels' probabilities."""
    probs, labels, scores = d["probs"], d["labels"], d["scores"]
    assert probs.shape == (num_classes,), tuple(probs.shape)
    assert abs(float(probs.sum()) - 1.0) < 1e-4, "probs do not sum to 1"
    k = labels.shape[0]
    assert labels.dtype == torch.int64 and labels.shape == scores.shape == (k,) and k >= 1
    assert ((labels >= 1) & (labels <= num_classes)).all(), labels
    assert (scores[:-1] >= scores[1:]).all(), "scores are not best first"
    assert torch.allclose(probs[labels - 1], scores), "scores are not the labels' probs"


def check_model(model: Any) -> None:
    """Train mode: scalar finite ``loss_*`` terms, gradients reach parameters (the second
    image has no boxes). Eval mode: detection results per image in original pixels (+ masks
    ``[K,1,H,W]``), ``{"sem_seg": [C+1,H,W]}`` per image for semantic segmentation, or for a
    classifier ``labels [k]`` / ``scores [k]`` (top-k, best first) and ``probs [C]``."""
    num_classes = _num_classes(model)
    images, targets = tiny_batch(num_classes)
    torch.manual_seed(0)
    model.train()
    losses = model(images, targets)
    check_loss_terms(losses)
    sum(losses.values()).backward()
    assert any(p.grad is not None for p in model.parameters()), "no gradient reaches the model"
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        out = model(images)
    sizes = [tuple(im.shape[-2:]) for im in images]
    assert isinstance(out, list) and len(out) == 2, "eval mode returns one dict per image"
    if all("sem_seg" in d for d in out):
        for d, size in zip(out, sizes):
            assert d["sem_seg"].shape == (num_classes + 1, *size), d["sem_seg"].shape
            assert torch.isfinite(d["sem_seg"]).all()
        return
    if all("probs" in d and "boxes" not in d for d in out):
        for d in out:
            check_classification_output(d, num_classes)
        return
    check_detections(out, 2, sizes, num_classes)
    for d, size in zip(out, sizes):
        if "masks" in d:
            assert d["masks"].shape == (d["boxes"].shape[0], 1, *size), d["masks"].shape


register_checks(
    roles={
        "rpn_head": check_rpn_head,
        "roi_box_head": check_roi_box_head,
        "roi_mask_head": check_roi_mask_head,
        "segmentation_head": check_segmentation_head,
        "rpn_loss": check_rpn_loss,
        "roi_box_loss": check_roi_box_loss,
        "mask_loss": check_mask_loss,
        "segmentation_loss": check_segmentation_loss,
        "style_loss": check_style_loss,
        "image_prior_loss": check_image_prior_loss,
        "rpn_proposals": check_proposal_generator,
        "rcnn_postprocessor": check_rcnn_postprocessor,
        "mask_postprocessor": check_mask_postprocessor,
    },
    kinds={"model": check_model},
)
