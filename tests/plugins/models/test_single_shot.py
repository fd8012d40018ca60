import pytest
import torch

from anchorage.core import DataError, build_component
from anchorage.core.data.batching import pad_targets
from anchorage.core.interfaces import Anchors, GroundTruth
from anchorage.plugins.models.single_shot import _TINY


def _model(**changes):
    torch.manual_seed(0)
    return build_component("model", {"type": "single_shot", **_TINY, **changes})


def _batch():
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 48, 64, generator=g), torch.rand(3, 64, 40, generator=g)]
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    return images, targets


@pytest.mark.parametrize("loss", ["multibox", "masked_l1"])
def test_train_step_with_an_empty_image_is_finite(loss):
    model = _model(loss={"type": loss}).train()
    images, targets = _batch()
    out = model(images, targets)
    assert set(out) == {"loss_classification", "loss_bbox_regression"}
    total = sum(out.values())
    assert torch.isfinite(total) and total > 0
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_batch_without_any_box_is_finite():
    model = _model().train()
    images, targets = _batch()
    out = model(images, [targets[1], targets[1]])
    assert all(torch.isfinite(v) for v in out.values())


def test_assign_matches_positive_anchor_and_encodes():
    model = _model(matcher={"type": "max_iou", "high_threshold": 0.5, "keep_best_anchor": True})
    anchors = torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40], [0, 0, 30, 30]])
    targets = [
        {
            "boxes": torch.tensor([[21.0, 21, 40, 40], [0, 0, 9, 9]]),
            "labels": torch.tensor([2, 1]),
            "iscrowd": torch.tensor([0, 1]),
        },
    ]
    gt = GroundTruth(*pad_targets(targets))
    found = model.targets(Anchors.single_level(anchors), gt, {})
    cls, deltas = found.labels, found.box_targets
    assert cls.tolist() == [[0, 2, 0]]  # the crowd box matches nothing
    expected = model.box_coder.encode(targets[0]["boxes"][0], anchors[1])
    torch.testing.assert_close(deltas[0, 1], expected)
    assert (deltas[0, [0, 2]] == 0).all()


def test_eval_returns_boxes_in_original_pixels():
    model = _model(postprocessor={"type": "multiclass_nms", "score_thresh": 0.0}).eval()
    images, _ = _batch()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for det, im in zip(out, images):
        assert det["boxes"].shape[1] == 4 and len(det["boxes"]) > 0
        assert det["labels"].dtype == torch.int64 and det["labels"].min() >= 1
        assert det["boxes"][:, 2].max() <= im.shape[2] + 1e-3
        assert det["boxes"][:, 3].max() <= im.shape[1] + 1e-3


def test_swapping_the_matcher_is_one_line():
    model = _model(matcher={"type": "greedy_bipartite"}).train()
    images, targets = _batch()
    assert torch.isfinite(sum(model(images, targets).values()))


def test_bad_targets_give_clear_errors():
    model = _model().train()
    images, targets = _batch()
    with pytest.raises(DataError, match="needs targets"):
        model(images)
    bad = [
        {"boxes": torch.tensor([[10.0, 5.0, 10.0, 20.0]]), "labels": torch.tensor([1])},
        targets[1],
    ]
    with pytest.raises(DataError, match="non-positive width or height"):
        model(images, bad)
    bad = [
        {"boxes": torch.tensor([[1.0, 1.0, 10.0, 20.0]]), "labels": torch.tensor([3])},
        targets[1],
    ]
    with pytest.raises(DataError, match=r"labels must be in 1\.\.2"):
        model(images, bad)


def test_level_mismatch_between_backbone_and_anchors():
    with pytest.raises(ValueError, match="same number of levels"):
        _model(anchor_generator={"type": "multibox_prior", "sizes": [[0.2], [0.4]]})
