import itertools
import sys
import types

import pytest
import torch
from torchvision.ops import box_convert, generalized_box_iou

from anchorage.core import SpecError, build_component
from anchorage.core.host_sync import record_host_syncs
from anchorage.core.interfaces import Anchors, GroundTruth

C = 4  # classes


def _matcher(**params):
    return build_component("matcher", {"type": "hungarian", **params})


def _problem(seed: int, q: int, counts: list[int], g: int | None = None, *, background=True):
    """Random set predictions (``logits [B,Q,C(+1)]``, cxcywh ``boxes``) and a normalised,
    padded gt with ``counts[b]`` valid rows per image, the padding scattered among them."""
    gen = torch.Generator().manual_seed(seed)
    b, g = len(counts), g if g is not None else max(counts, default=0)
    logits = torch.randn(b, q, C + int(background), generator=gen) * 2
    centres = 0.2 + 0.6 * torch.rand(b, q, 2, generator=gen)
    boxes = torch.cat([centres, 0.05 + 0.35 * torch.rand(b, q, 2, generator=gen)], -1)
    gt_c = 0.2 + 0.6 * torch.rand(b, g, 2, generator=gen)
    gt_boxes = box_convert(
        torch.cat([gt_c, 0.05 + 0.35 * torch.rand(b, g, 2, generator=gen)], -1), "cxcywh", "xyxy"
    )
    valid = torch.zeros(b, g, dtype=torch.bool)
    for i, n in enumerate(counts):
        valid[i, torch.randperm(g, generator=gen)[:n]] = True
    labels = torch.where(valid, torch.randint(1, C + 1, (b, g), generator=gen), -1)
    gt = GroundTruth(torch.where(valid[..., None], gt_boxes, 0.0), labels, valid)
    return {"logits": logits, "boxes": boxes}, gt


def _anchors(predictions):
    return Anchors.single_level(box_convert(predictions["boxes"], "cxcywh", "xyxy"))


def _match(matcher, predictions, gt):
    return matcher(_anchors(predictions), gt, predictions=predictions).matched


def _pair_cost(logit, box, label, gt_box, *, focal, background, w=(1.0, 5.0, 2.0)):
    """The matching cost of one query and one gt, written out for that pair alone."""
    column = label - 1 + int(background)
    if focal:
        p = logit.sigmoid()[column]
        cls = 0.25 * (1 - p) ** 2 * -(p + 1e-8).log() - 0.75 * p**2 * -(1 - p + 1e-8).log()
    else:
        cls = -logit.softmax(-1)[column]
    l1 = (box - box_convert(gt_box, "xyxy", "cxcywh")).abs().sum()
    giou = generalized_box_iou(box_convert(box, "cxcywh", "xyxy")[None], gt_box[None])[0, 0]
    return w[0] * cls + w[1] * l1 - w[2] * giou


def _brute_force(cost: torch.Tensor) -> tuple[float, dict[int, int]]:
    """Minimum total cost over all injective assignments of ``cost [Q,G]``: query → gt."""
    q, g = cost.shape
    best = (float("inf"), {})
    if q >= g:
        for rows in itertools.permutations(range(q), g):
            pairs = dict(zip(rows, range(g)))
            best = min(best, (sum(float(cost[r, c]) for r, c in pairs.items()), pairs), key=_key)
    else:
        for cols in itertools.permutations(range(g), q):
            pairs = dict(zip(range(q), cols))
            best = min(best, (sum(float(cost[r, c]) for r, c in pairs.items()), pairs), key=_key)
    return best


def _key(item):
    return item[0]


@pytest.mark.parametrize("class_cost", ["softmax", "focal"])
@pytest.mark.parametrize("seed", range(6))
def test_equals_brute_force_search(class_cost, seed):
    focal = class_cost == "focal"
    gen = torch.Generator().manual_seed(100 + seed)
    q = int(torch.randint(1, 6, (1,), generator=gen))
    counts = [int(torch.randint(1, 4, (1,), generator=gen)) for _ in range(2)]
    predictions, gt = _problem(seed, q, counts, g=3, background=not focal)
    matched = _match(_matcher(class_cost=class_cost), predictions, gt)
    for b in range(2):
        columns = gt.valid[b].nonzero().flatten().tolist()
        cost = torch.tensor(
            [
                [
                    float(
                        _pair_cost(
                            predictions["logits"][b, i],
                            predictions["boxes"][b, i],
                            int(gt.labels[b, c]),
                            gt.boxes[b, c],
                            focal=focal,
                            background=not focal,
                        )
                    )
                    for c in columns
                ]
                for i in range(q)
            ]
        )
        _, pairs = _brute_force(cost)
        expected = torch.full((q,), -1)
        for row, col in pairs.items():
            expected[row] = columns[col]
        assert torch.equal(matched[b], expected), (b, matched[b], expected)


def test_padding_and_invalid_rows_never_match():
    predictions, gt = _problem(0, 6, [2, 0, 3], g=5)
    valid = gt.valid.clone()
    valid[2, valid[2].nonzero()[0]] = False  # a crowd box: present, but never matched
    gt = GroundTruth(gt.boxes, gt.labels, valid)
    matched = _match(_matcher(), predictions, gt)
    assert matched.shape == (3, 6) and matched.dtype == torch.int64
    for b in range(3):
        hits = matched[b][matched[b] >= 0]
        assert valid[b, hits].all()
        assert len(set(hits.tolist())) == len(hits) == int(valid[b].sum())  # one-to-one, all
    assert (matched[1] == -1).all()


def test_more_gt_than_queries_matches_every_query_once():
    predictions, gt = _problem(1, 2, [3], g=3)
    matched = _match(_matcher(), predictions, gt)[0]
    assert (matched >= 0).all() and matched[0] != matched[1]


def test_no_gt_gives_background_without_scipy(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)  # G = 0 needs no solver
    predictions, gt = _problem(0, 5, [0, 0], g=0)
    assert gt.boxes.shape == (2, 0, 4)
    matched = _match(_matcher(), predictions, gt)
    assert matched.shape == (2, 5) and (matched == -1).all() and matched.dtype == torch.int64


def test_batch_equals_per_image_with_different_gt_counts():
    predictions, gt = _problem(3, 7, [1, 4], g=4)
    matched = _match(_matcher(), predictions, gt)
    for b in range(2):
        one = {k: v[b : b + 1] for k, v in predictions.items()}
        single = _match(_matcher(), one, gt.slice(b, b + 1))[0]
        assert torch.equal(single, matched[b])
    assert int((matched[0] >= 0).sum()) == 1 and int((matched[1] >= 0).sum()) == 4


def test_non_finite_predictions_still_give_an_assignment():
    predictions, gt = _problem(4, 4, [2], g=2)
    predictions["boxes"][0, 0] = float("nan")
    predictions["logits"][0, 1] = float("inf")
    matched = _match(_matcher(), predictions, gt)[0]
    assert sorted(matched[matched >= 0].tolist()) == [0, 1]
    assert (matched[:2] == -1).all()  # the broken queries lose to the sane ones


def test_one_host_sync_in_the_solver():
    predictions, gt = _problem(5, 8, [3, 1], g=3)
    with record_host_syncs() as syncs:
        _match(_matcher(), predictions, gt)
    assert {(s.file, s.function) for s in syncs} == {("hungarian.py", "_solve")}, syncs
    assert [s.op for s in syncs].count("Tensor.cpu") == 1, syncs


def test_missing_scipy_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    predictions, gt = _problem(0, 3, [1], g=1)
    with pytest.raises(ModuleNotFoundError, match=r"anchorage\[detr\]"):
        _match(_matcher(), predictions, gt)


def test_wrong_predictions_are_refused():
    predictions, gt = _problem(0, 3, [1], g=1)
    with pytest.raises(ValueError, match="'logits'"):
        _matcher()(_anchors(predictions), gt, predictions={"cls_logits": predictions["logits"]})
    with pytest.raises(ValueError, match="B = 1"):
        two = {k: v.expand(2, -1, -1) for k, v in predictions.items()}
        _matcher()(_anchors(predictions), gt, predictions=two)


def test_config_checks():
    with pytest.raises(SpecError, match="every matching cost weight is zero"):
        _matcher(class_weight=0.0, l1_weight=0.0, giou_weight=0.0)
    with pytest.raises(SpecError, match="l1_weight"):
        _matcher(l1_weight=-1.0)
    with pytest.raises(SpecError, match="class_cost"):
        _matcher(class_cost="sigmoid")
    _matcher(class_weight=0.0, l1_weight=0.0)  # one weight is enough


def test_background_column_declaration():
    from anchorage.plugins.matchers.hungarian import HungarianMatcher as M

    ns = types.SimpleNamespace
    assert M.background_column(M.Config()) is True
    assert M.background_column(M.Config(class_cost="focal")) is False
    assert M.background_column(M.Config(class_cost="focal", background_column=True)) is True
    assert M.background_column(ns(class_cost="softmax", background_column=False)) is False
    assert M.background_column(ns(class_cost="focal", background_column=None)) is False


def test_focal_with_background_column_skips_column_zero():
    predictions, gt = _problem(6, 5, [2, 3], g=3, background=False)
    plain = _match(_matcher(class_cost="focal"), predictions, gt)
    padded = dict(predictions, logits=torch.cat([torch.randn(2, 5, 1), predictions["logits"]], -1))
    with_column = _matcher(class_cost="focal", background_column=True)
    assert torch.equal(_match(with_column, padded, gt), plain)


# ----------------------------------------------------------------- transformers' matchers


def _theirs(predictions, gt, background):
    """transformers' inputs: labels 0..C-1, the no-object column last, cxcywh targets of the
    valid gt only; and each image's valid column indices (theirs → our padded columns)."""
    logits = predictions["logits"]
    if background:
        logits = torch.cat([logits[..., 1:], logits[..., :1]], -1)
    targets, columns = [], []
    for b in range(gt.boxes.shape[0]):
        cols = gt.valid[b].nonzero().flatten()
        boxes = box_convert(gt.boxes[b, cols], "xyxy", "cxcywh")
        targets.append({"class_labels": gt.labels[b, cols] - 1, "boxes": boxes})
        columns.append(cols)
    return {"logits": logits, "pred_boxes": predictions["boxes"]}, targets, columns


@pytest.mark.parametrize("class_cost", ["softmax", "focal"])
@pytest.mark.parametrize("seed", range(4))
def test_equals_transformers(class_cost, seed):
    pytest.importorskip("scipy")
    pytest.importorskip("transformers")
    from transformers.loss.loss_deformable_detr import DeformableDetrHungarianMatcher
    from transformers.loss.loss_for_object_detection import HungarianMatcher

    weights = {"class_weight": 2.0, "l1_weight": 5.0, "giou_weight": 2.0}
    focal = class_cost == "focal"
    reference = (DeformableDetrHungarianMatcher if focal else HungarianMatcher)(
        class_cost=2.0, bbox_cost=5.0, giou_cost=2.0
    )
    predictions, gt = _problem(seed, 30, [5, 0, 12, 1], g=14, background=not focal)
    matched = _match(_matcher(class_cost=class_cost, **weights), predictions, gt)
    outputs, targets, columns = _theirs(predictions, gt, background=not focal)
    for b, (rows, picked) in enumerate(reference(outputs, targets)):
        expected = torch.full((30,), -1)
        expected[rows] = columns[b][picked]
        assert torch.equal(matched[b], expected), b
