import types

import pytest
import torch
import torch.distributed as dist
from torchvision.ops import box_convert

from anchorage.core import SpecError, build_component
from anchorage.core.host_sync import record_host_syncs
from anchorage.core.interfaces import Anchors, Assignment, GroundTruth
from anchorage.core.testing import check_loss_terms

C, Q, L = 5, 12, 3  # classes, queries, decoder layers
TERMS = ("loss_classification", "loss_bbox_l1", "loss_giou")


def _loss(**params):
    return build_component("loss", {"type": "set_criterion", **params})


def _gt(seed: int, counts: list[int], g: int) -> GroundTruth:
    """Normalised padded gt (xyxy 0..1), ``counts[b]`` valid rows first, labels 1..C."""
    gen = torch.Generator().manual_seed(seed)
    b = len(counts)
    cxcy = 0.2 + 0.6 * torch.rand(b, g, 2, generator=gen)
    wh = 0.05 + 0.35 * torch.rand(b, g, 2, generator=gen)
    boxes = box_convert(torch.cat([cxcy, wh], -1), "cxcywh", "xyxy")
    valid = torch.arange(g)[None, :] < torch.tensor(counts)[:, None]
    labels = torch.where(valid, torch.randint(1, C + 1, (b, g), generator=gen), -1)
    return GroundTruth(torch.where(valid[..., None], boxes, 0.0), labels, valid)


def _layers(seed: int, b: int, columns: int) -> list[dict[str, torch.Tensor]]:
    """L layers of predictions (leaf tensors requiring grad): logits, cxcywh boxes."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(L):
        logits = torch.randn(b, Q, columns, generator=gen) * 2
        raw = torch.randn(b, Q, 4, generator=gen)
        out.append({"logits": logits.requires_grad_(), "boxes": raw.sigmoid().requires_grad_()})
    return out


def _assign(layers, gt, class_cost: str, class_weight: float = 1.0) -> list[Assignment]:
    matcher = build_component(
        "matcher", {"type": "hungarian", "class_cost": class_cost, "class_weight": class_weight}
    )
    out = []
    for layer in layers:
        anchors = Anchors.single_level(box_convert(layer["boxes"].detach(), "cxcywh", "xyxy"))
        out.append(matcher(anchors, gt, predictions=layer))
    return out


# ------------------------------------------------------------------ vs transformers' losses


def _their_inputs(layers, gt, background: bool):
    """Stacked per-layer outputs with the no-object column last, labels 0..C-1, cxcywh."""
    logits = torch.stack([x["logits"] for x in layers])
    if background:
        logits = torch.cat([logits[..., 1:], logits[..., :1]], -1)
    boxes = torch.stack([x["boxes"] for x in layers])
    labels = []
    for b in range(gt.boxes.shape[0]):
        n = int(gt.valid[b].sum())
        targets = box_convert(gt.boxes[b, :n], "xyxy", "cxcywh")
        labels.append({"class_labels": gt.labels[b, :n] - 1, "boxes": targets})
    return logits, boxes, labels


def _their_config(class_weight: float, focal: bool) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        class_cost=class_weight,  # the matcher's class weight (their loss fixes loss_ce at 1)
        bbox_cost=5.0,
        giou_cost=2.0,
        num_labels=C,
        eos_coefficient=0.1,
        focal_alpha=0.25,
        auxiliary_loss=True,
        decoder_layers=L,
        bbox_loss_coefficient=5.0,
        giou_loss_coefficient=2.0,
    )


@pytest.mark.parametrize("classification", ["cross_entropy", "focal"])
@pytest.mark.parametrize("class_weight", [1.0, 2.0])
@pytest.mark.parametrize("seed", range(3))
def test_equals_transformers(classification, class_weight, seed):
    pytest.importorskip("scipy")
    pytest.importorskip("transformers")
    from transformers.loss.loss_deformable_detr import DeformableDetrForObjectDetectionLoss
    from transformers.loss.loss_for_object_detection import ForObjectDetectionLoss

    focal = classification == "focal"
    gt = _gt(seed, [3, 0, 7], g=8)
    layers = _layers(seed, 3, C if focal else C + 1)
    ours = _loss(classification=classification, class_weight=class_weight)(
        layers, _assign(layers, gt, "focal" if focal else "softmax", class_weight), gt
    )
    logits, boxes, labels = _their_inputs(layers, gt, background=not focal)
    reference = DeformableDetrForObjectDetectionLoss if focal else ForObjectDetectionLoss
    total, terms, _ = reference(
        logits[-1], labels, "cpu", boxes[-1], _their_config(class_weight, focal), logits, boxes
    )
    weights = {"loss_ce": class_weight, "loss_bbox": 5.0, "loss_giou": 2.0}
    names = dict(zip(TERMS, weights))
    assert len(ours) == 3 * L
    expected_total = 0.0
    for layer in range(L):
        suffix, theirs = ("", "") if layer == L - 1 else (f"_d{layer}", f"_{layer}")
        for name, their_name in names.items():
            expected = weights[their_name] * terms[their_name + theirs]
            torch.testing.assert_close(ours[name + suffix], expected, msg=name + suffix)
            expected_total = expected_total + expected
    torch.testing.assert_close(sum(ours.values()), expected_total)
    if class_weight == 1.0:
        torch.testing.assert_close(sum(ours.values()), total)


# --------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("classification", ["cross_entropy", "focal"])
def test_no_boxes_finite_with_gradients(classification):
    focal = classification == "focal"
    loss = _loss(classification=classification)
    for gt in (_gt(0, [0, 2], g=2), _gt(0, [0, 0], g=0)):
        layers = _layers(1, 2, C if focal else C + 1)
        out = loss(layers, _assign(layers, gt, "focal" if focal else "softmax"), gt)
        assert sorted(out) == sorted(f"{t}{s}" for t in TERMS for s in ("", "_d0", "_d1"))
        check_loss_terms(out, tuple(t for layer in layers for t in layer.values()))
    assert out["loss_bbox_l1"] == 0 and out["loss_giou"] == 0  # G = 0: no box term


def test_gradients_reach_every_layer():
    gt = _gt(2, [4, 1], g=4)
    layers = _layers(3, 2, C + 1)
    out = _loss()(layers, _assign(layers, gt, "softmax"), gt)
    sum(out.values()).backward()
    for layer in layers:
        for t in layer.values():
            assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_unmatched_queries_get_no_box_gradient():
    gt = _gt(4, [2], g=2)
    layers = _layers(5, 1, C + 1)[-1:]
    assignments = _assign(layers, gt, "softmax")
    out = _loss()(layers, assignments, gt)
    (out["loss_bbox_l1"] + out["loss_giou"]).backward()
    unmatched = assignments[0].matched[0] < 0
    assert (layers[0]["boxes"].grad[0, unmatched] == 0).all()
    assert (layers[0]["boxes"].grad[0, ~unmatched].abs().sum(-1) > 0).all()


def test_no_host_syncs():
    gt = _gt(6, [3, 1], g=3)
    layers = _layers(7, 2, C + 1)
    assignments = _assign(layers, gt, "softmax")
    for params in ({}, {"classification": "focal", "background_column": True}):
        with record_host_syncs() as syncs:
            sum(_loss(**params)(layers, assignments, gt).values()).backward()
        assert not syncs, syncs


def test_focal_with_background_column_keeps_column_zero_as_a_negative():
    gt = _gt(8, [3, 2], g=3)
    layers = _layers(9, 2, C + 1)
    out = _loss(classification="focal", background_column=True)(
        layers, _assign(layers, gt, "softmax"), gt
    )
    sum(out.values()).backward()
    assert (layers[-1]["logits"].grad[..., 0] > 0).all()  # pushed down everywhere


def test_num_boxes_is_averaged_over_ranks(monkeypatch):
    gt = _gt(10, [3, 2], g=3)
    layers = _layers(11, 2, C + 1)
    assignments = _assign(layers, gt, "softmax")
    plain = _loss()(layers, assignments, gt)
    # two ranks: the other one has 9 boxes, so N = (5 + 9) / 2 = 7 instead of 5
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(dist, "all_reduce", lambda t, *a, **k: t.add_(9.0))
    two = _loss()(layers, assignments, gt)
    for name in ("loss_bbox_l1", "loss_giou_d1"):
        torch.testing.assert_close(two[name] * 7, plain[name] * 5)
    torch.testing.assert_close(two["loss_classification"], plain["loss_classification"])


def test_single_process_gloo_group(tmp_path):
    if not dist.is_available() or dist.is_initialized():
        pytest.skip("needs torch.distributed and no process group yet")
    gt = _gt(12, [3, 0], g=3)
    layers = _layers(13, 2, C)
    assignments = _assign(layers, gt, "focal")
    plain = _loss(classification="focal")(layers, assignments, gt)
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        grouped = _loss(classification="focal")(layers, assignments, gt)
    finally:
        dist.destroy_process_group()
    for name, value in plain.items():
        torch.testing.assert_close(grouped[name], value)


def test_refuses_mismatched_inputs():
    gt = _gt(0, [1], g=1)
    layers = _layers(0, 1, C + 1)
    assignments = _assign(layers, gt, "softmax")
    with pytest.raises(ValueError, match="one assignment per layer"):
        _loss()(layers, assignments[:1], gt)
    with pytest.raises(ValueError, match="do not fit"):
        wrong = [Assignment(a.matched[:, :5]) for a in assignments]
        _loss()(layers, wrong, gt)


def test_config_and_layout():
    from anchorage.plugins.losses.set_criterion import SetCriterion as S

    with pytest.raises(SpecError, match="needs the no-object column"):
        _loss(background_column=False)
    with pytest.raises(SpecError, match="no_object_weight"):
        _loss(no_object_weight=0.0)
    with pytest.raises(SpecError, match="classification"):
        _loss(classification="softmax")
    ns = types.SimpleNamespace
    assert S.background_column(S.Config()) is True
    assert S.background_column(S.Config(classification="focal")) is False
    assert S.background_column(ns(classification="focal", background_column=True)) is True
    assert _loss().role == "set_loss"
