"""Conformance checks of the set-prediction roles (``core/interfaces/set_prediction.py``) and
of matchers that read set predictions.

Inputs follow the contract: feature levels ``[B,D,h,w]`` with padding masks (the second image
padded), normalised boxes (cxcywh predictions, xyxy gt in 0..1), class columns sized by the
component's ``background_column``.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision.ops import box_convert

from ..interfaces.matching import Anchors, Assignment, GroundTruth, Matcher
from ..interfaces.set_prediction import EncoderMatch, SetDecoding
from .kit import register_checks
from .roles import check_detections, check_loss_terms

_B, _Q, _C = 2, 6, 3


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _columns(component: Any, cfg: Any) -> int:
    declare = getattr(type(component), "background_column", None)
    return _C + 1 if declare is not None and declare(cfg) else _C


def kit_masks(sizes: list[tuple[int, int]], b: int = _B) -> list[torch.Tensor]:
    """bool ``[B,h,w]`` per level: the first image fills the map, the second only its
    top-left ~2/3 (True = padding)."""
    masks = []
    for h, w in sizes:
        mask = torch.zeros(b, h, w, dtype=torch.bool)
        mask[1:, (2 * h + 2) // 3 :, :] = True
        mask[1:, :, (2 * w + 2) // 3 :] = True
        masks.append(mask)
    return masks


def set_predictions(k: int, *, layers: int | None = None, grad: bool = False) -> dict:
    """``logits [(L,)B,Q,k]`` and ``boxes [(L,)B,Q,4]`` cxcywh in 0..1 (random, seeded)."""
    lead = (_B, _Q) if layers is None else (layers, _B, _Q)
    g = _gen()
    logits = torch.randn(*lead, k, generator=g)
    centre = 0.2 + 0.6 * torch.rand(*lead, 2, generator=g)
    size = 0.05 + 0.3 * torch.rand(*lead, 2, generator=g)
    boxes = torch.cat([centre, size], -1)
    return {"logits": logits.requires_grad_(grad), "boxes": boxes.requires_grad_(grad)}


def normalised_gt() -> GroundTruth:
    """Two images: three boxes (xyxy 0..1; the third padding) and one box."""
    boxes = torch.tensor(
        [
            [[0.1, 0.1, 0.4, 0.5], [0.5, 0.3, 0.9, 0.8], [0.0, 0.0, 0.0, 0.0]],
            [[0.2, 0.2, 0.6, 0.7], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
        ]
    )
    labels = torch.tensor([[1, 3, -1], [2, -1, -1]])
    return GroundTruth(boxes, labels, labels > 0)


def check_positional_encoding(encoding: Any, cfg: Any) -> None:
    """``[B,D,h,w]`` finite for a padded batch; an image's embedding over its valid pixels."""
    (mask,) = kit_masks([(6, 9)])
    out = encoding(mask)
    assert tuple(out.shape) == (_B, cfg.dim, 6, 9), f"got {tuple(out.shape)}"
    assert torch.isfinite(out).all(), "non-finite position embedding"


def check_set_transformer(transformer: Any, cfg: Any) -> None:
    """``SetDecoding.hidden [L,B,Q,D]`` for ``num_levels`` padded levels; references None or
    one ``[B,Q,2|4]`` per layer in 0..1; the gradient reaches the features; with a refiner
    when it uses one, and a proposer when it is two-stage (then ``encoder_logits [B,S,K]`` and
    ``encoder_boxes [B,S,4]`` in 0..1, S the positions of every level). With query groups
    (``groups`` G > 1, train mode) the query axis is G·Q; eval mode gives ``groups`` 1 and Q."""
    d, levels = transformer.hidden_dim, cfg.num_levels
    sizes = [(max(8 >> i, 1), max(10 >> i, 1)) for i in range(levels)]
    g = _gen()
    features = [torch.randn(_B, d, h, w, generator=g).requires_grad_() for h, w in sizes]
    positions = [torch.randn(_B, d, h, w, generator=g) for h, w in sizes]
    masks = kit_masks(sizes)

    def refine(layer: int, hidden: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor:
        base = torch.full((*hidden.shape[:2], 4), 0.5) if reference is None else reference
        wide = base if base.shape[-1] == 4 else torch.cat([base, torch.full_like(base, 0.2)], -1)
        return (wide + 0.01 * hidden[..., :4].tanh()).clamp(0.01, 0.99)

    def propose(query: torch.Tensor, proposals: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = query[..., :_C]
        boxes = (proposals + 0.01 * query[..., :4].tanh()).clamp(0.01, 0.99)
        return {"logits": logits, "boxes": boxes, "scores": logits[..., 0]}

    hooks = {"propose": propose} if getattr(transformer, "uses_proposer", False) else {}
    refiner = refine if transformer.uses_refiner else None
    decoding = transformer(features, masks, positions, refiner, **hooks)
    assert isinstance(decoding, SetDecoding), f"returned {type(decoding).__name__}"
    if hooks:
        s = sum(h * w for h, w in sizes)
        logits, boxes = decoding.encoder_logits, decoding.encoder_boxes
        assert logits is not None and tuple(logits.shape) == (_B, s, _C), "encoder_logits [B,S,K]"
        assert boxes is not None and tuple(boxes.shape) == (_B, s, 4), "encoder_boxes [B,S,4]"
        assert ((boxes >= 0) & (boxes <= 1)).all(), "encoder boxes must be in 0..1"
    groups = decoding.groups
    assert isinstance(groups, int) and groups >= 1, f"groups must be an int >= 1, got {groups!r}"
    queries = groups * cfg.num_queries
    lead = (transformer.num_decoder_layers, _B, queries, d)
    assert tuple(decoding.hidden.shape) == lead, f"hidden {tuple(decoding.hidden.shape)} != {lead}"
    assert torch.isfinite(decoding.hidden).all(), "non-finite decoder states"
    if decoding.references is not None:
        assert len(decoding.references) == lead[0], "one reference per decoder layer"
        for ref in decoding.references:
            assert tuple(ref.shape[:2]) == (_B, queries) and ref.shape[-1] in (2, 4)
            assert ((ref >= 0) & (ref <= 1)).all(), "references must be in 0..1"
    grad = torch.autograd.grad(decoding.hidden.sum(), features, allow_unused=True)
    assert grad[0] is not None, "no gradient reaches the finest feature level"
    if groups > 1:
        transformer.eval()
        with torch.no_grad():
            single = transformer(features, masks, positions, refiner, **hooks)
        transformer.train()
        assert single.groups == 1, f"eval mode must decode group 0 only, got groups {single.groups}"
        assert tuple(single.hidden.shape) == (lead[0], _B, cfg.num_queries, d), "eval: Q queries"


def check_set_head(head: Any, cfg: Any) -> None:
    """``logits [L,B,Q,K]`` (K from ``background_column``), ``boxes [L,B,Q,4]`` in 0..1, without
    and with 2-d references; its refiner gives ``[B,Q,4]`` in 0..1."""
    layers, d = cfg.num_layers, cfg.hidden_dim
    hidden = torch.randn(layers, _B, _Q, d, generator=_gen())
    k = _columns(head, cfg)
    refs = torch.rand(layers, _B, _Q, 2, generator=_gen())
    for references in (None, refs):
        out = head(SetDecoding(hidden, references))
        assert tuple(out["logits"].shape) == (layers, _B, _Q, k), tuple(out["logits"].shape)
        assert tuple(out["boxes"].shape) == (layers, _B, _Q, 4), tuple(out["boxes"].shape)
        assert ((out["boxes"] >= 0) & (out["boxes"] <= 1)).all(), "boxes must be in 0..1"
    refined = head.refiner()(0, hidden[0], refs[0])
    assert tuple(refined.shape) == (_B, _Q, 4) and ((refined >= 0) & (refined <= 1)).all()
    if getattr(cfg, "encoder_proposals", False):
        query = torch.randn(_B, 7, d, generator=_gen())
        proposals = torch.cat(
            [torch.rand(_B, 7, 2, generator=_gen()), torch.full((_B, 7, 2), 0.1)], -1
        )
        out = head.proposer()(query, proposals)
        assert tuple(out["logits"].shape) == (_B, 7, k), tuple(out["logits"].shape)
        assert tuple(out["boxes"].shape) == (_B, 7, 4) and tuple(out["scores"].shape) == (_B, 7)
        assert ((out["boxes"] >= 0) & (out["boxes"] <= 1)).all(), "proposal boxes must be in 0..1"


def _one_to_one(gt: GroundTruth, layers: int) -> list[Assignment]:
    """Query i of image b matched to gt i (valid ones), the rest unmatched."""
    matched = torch.full((_B, _Q), Matcher.BACKGROUND, dtype=torch.int64)
    for b in range(_B):
        n = int(gt.valid[b].sum())
        matched[b, :n] = torch.arange(n)
    return [Assignment(matched.clone()) for _ in range(layers)]


def check_set_loss(loss: Any, cfg: Any) -> None:
    """Terms of three layers (gradient to every layer's logits and boxes); with two-stage
    encoder proposals (``EncoderMatch``: more terms, named ``*_enc``); no gt at all."""
    preds = set_predictions(_columns(loss, cfg), layers=3, grad=True)
    gt = normalised_gt()
    layers = [{"logits": preds["logits"][i], "boxes": preds["boxes"][i]} for i in range(3)]
    out = loss(layers, _one_to_one(gt, 3), gt)
    check_loss_terms(out, (preds["logits"], preds["boxes"]))
    agnostic = gt.class_agnostic()
    encoder = EncoderMatch(layers[0], _one_to_one(agnostic, 1)[0], agnostic)
    with_encoder = loss(layers, _one_to_one(gt, 3), gt, encoder=encoder)
    check_loss_terms(with_encoder, (preds["logits"], preds["boxes"]))
    added = set(with_encoder) - set(out)
    assert added and all(k.endswith("_enc") for k in added), f"encoder terms {sorted(added)}"
    empty = GroundTruth(gt.boxes[:, :0], gt.labels[:, :0], gt.valid[:, :0])
    check_loss_terms(loss(layers, _one_to_one(empty, 3), empty), (preds["logits"],))


def check_set_postprocessor(post: Any, cfg: Any) -> None:
    """Detections in each image's pixels, best first, labels 1..C."""
    preds = set_predictions(_columns(post, cfg))
    sizes = [(40, 60), (30, 20)]
    check_detections(post(preds, sizes), _B, sizes, _C)


def check_set_matcher(matcher: Any) -> None:
    """A matcher that reads set predictions: one-to-one (each valid gt once, padding never),
    batched == per image, G = 0 all background."""
    cfg = getattr(matcher, "cfg", None)
    preds = set_predictions(_columns(matcher, cfg))
    gt = normalised_gt()
    anchors = Anchors.single_level(box_convert(preds["boxes"], "cxcywh", "xyxy"))
    matched = matcher(anchors, gt, predictions=preds).matched
    assert matched.shape == (_B, _Q) and matched.dtype == torch.int64
    for b in range(_B):
        got = sorted(matched[b][matched[b] >= 0].tolist())
        assert got == list(range(int(gt.valid[b].sum()))), f"image {b}: matched {got}"
        one = {k: v[b : b + 1] for k, v in preds.items()}
        single = matcher(Anchors.single_level(anchors.boxes[b : b + 1]), gt.slice(b, b + 1),
                         predictions=one).matched[0]  # fmt: skip
        assert torch.equal(single, matched[b]), "batched != per image"
    empty = GroundTruth(gt.boxes[:, :0], gt.labels[:, :0], gt.valid[:, :0])
    none = matcher(anchors, empty, predictions=preds).matched
    assert (none == Matcher.BACKGROUND).all(), "zero gt must give background (-1)"


register_checks(
    roles={
        "positional_encoding": check_positional_encoding,
        "set_transformer": check_set_transformer,
        "set_head": check_set_head,
        "set_loss": check_set_loss,
        "set_postprocessor": check_set_postprocessor,
    },
)
