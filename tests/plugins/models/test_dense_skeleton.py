"""The dense-detector skeleton (``single_shot``) with a neck, point anchors and other matchers /
losses: a RetinaNet / FCOS shaped detector is a spec, not a model class."""

import pytest
import torch

from anchorage.core import build_component

FCOS_LIKE = {
    "num_classes": 2,
    "preprocess": {"min_size": (64,), "max_size": 96, "size_divisible": 32},
    "backbone": {"type": "resnet18", "return_layers": ("layer2", "layer3", "layer4")},
    "neck": {"type": "fpn", "out_channels": 16, "extra_block": "p6p7"},
    "anchor_generator": {
        "type": "grid_anchors",
        "sizes": ((8,), (16,), (32,), (64,), (128,)),
        "aspect_ratios": ((1.0,),),
    },
    "head": {"type": "ssd_head", "background": False},
    "matcher": {"type": "centre_sampling"},
    "box_coder": {"type": "delta_xywh", "weights": (1.0, 1.0, 1.0, 1.0)},
    "loss": {"type": "sigmoid_focal", "normalize": "batch", "box_loss": {"type": "giou"}},
    "postprocessor": {"type": "multiclass_nms", "score": "sigmoid", "score_thresh": 0.0},
}


def _model(**changes):
    torch.manual_seed(0)
    return build_component("model", {"type": "single_shot", **FCOS_LIKE, **changes})


def _batch():
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 64, 80, generator=g), torch.rand(3, 72, 64, generator=g)]
    targets = [
        {
            "boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0], [30, 20, 60, 40]]),
            "labels": torch.tensor([2, 1]),
        },
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    return images, targets


class _Recorder:
    """Wraps a matcher and keeps what it was called with."""

    def __init__(self, matcher):
        self.matcher, self.calls = matcher, []

    def __call__(self, anchors, gt, *, predictions=None):
        out = self.matcher(anchors, gt, predictions=predictions)
        self.calls.append((anchors, gt, predictions, out))
        return out


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"matcher": {"type": "atss", "topk": 3}},
        {"matcher": {"type": "centre_in_box"}, "loss": {"type": "sigmoid_focal"}},
        {
            "neck": {"type": "fpn", "out_channels": 16, "extra_block": "p6p7_c5"},
            "matcher": {
                "type": "max_iou",
                "high_threshold": 0.5,
                "low_threshold": 0.4,
                "allow_low_quality_matches": True,
            },
            "loss": {"type": "sigmoid_focal", "box_loss": {"type": "smooth_l1", "beta": 0.11}},
        },
    ],
)
def test_train_step_with_an_empty_image(changes):
    model = _model(**changes).train()
    recorder = model.matcher = _Recorder(model.matcher)
    images, targets = _batch()
    out = model(images, targets)
    assert set(out) == {"loss_classification", "loss_bbox_regression"}
    total = sum(out.values())
    assert torch.isfinite(total) and out["loss_bbox_regression"] > 0
    total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    anchors, gt, predictions, assignment = recorder.calls[0]
    assert anchors.strides == (8, 16, 32, 64, 128) and len(anchors.num_per_level) == 5
    assert sum(anchors.num_per_level) == predictions["cls_logits"].shape[1]
    assert predictions["cls_logits"].shape[-1] == 2  # sigmoid layout: C columns
    assert gt.boxes.shape == (2, 2, 4) and gt.valid.tolist() == [[True, True], [False, False]]
    assert (assignment.matched[0] >= 0).any() and (assignment.matched[1] == -1).all()


def test_batch_without_boxes_and_eval_contract():
    model = _model().train()
    images, targets = _batch()
    out = model(images, [targets[1], targets[1]])
    assert all(torch.isfinite(v) for v in out.values())
    assert float(out["loss_bbox_regression"].detach()) == 0.0
    model.eval()
    with torch.no_grad():
        found = model(images)
    assert len(found) == 2
    for det, im in zip(found, images):
        assert set(det) == {"boxes", "scores", "labels"} and len(det["boxes"]) > 0
        assert det["labels"].min() >= 1 and det["labels"].max() <= 2
        assert det["boxes"][:, 2].max() <= im.shape[2] + 1e-3
        assert det["boxes"][:, 3].max() <= im.shape[1] + 1e-3


def test_neck_levels_must_fit_the_anchor_levels():
    with pytest.raises(ValueError, match="same number of levels"):
        _model(neck={"type": "fpn", "out_channels": 16, "extra_block": "none"})
