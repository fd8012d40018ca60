"""darknet backbone → yolo_neck → yolo_head: shapes follow feature_info and the anchor order."""

import pytest
import torch

from anchorage.core import build_component


def _parts(num_classes: int = 3):
    backbone = build_component(
        "backbone",
        {
            "type": "darknet",
            "stem_channels": 4,
            "channels": [8, 8, 16, 16, 24],
            "blocks": [1, 1, 1, 1, 1],
        },
    )
    neck = build_component(
        "neck",
        {"type": "yolo_neck", "out_channels": [8, 12, 16]},
        in_feature_info=tuple(backbone.feature_info),
    )
    gen = build_component("anchor_generator", {"type": "yolo_anchors"})
    head = build_component(
        "head",
        {"type": "yolo_head"},
        in_channels=tuple(f.channels for f in neck.feature_info),
        num_anchors=tuple(gen.num_anchors_per_location()),
        num_classes=num_classes,
    )
    return backbone, neck, gen, head


def test_shapes_match_feature_info_and_anchor_count():
    backbone, neck, gen, head = _parts()
    assert [(f.name, f.channels, f.stride) for f in backbone.feature_info] == [
        ("c3", 16, 8),
        ("c4", 16, 16),
        ("c5", 24, 32),
    ]
    x = torch.rand(2, 3, 96, 64)
    feats = backbone(x)
    for spec, t in zip(backbone.feature_info, feats.values()):
        assert t.shape == (2, spec.channels, 96 // spec.stride, 64 // spec.stride)
    out = neck(feats)
    assert list(out) == ["p3", "p4", "p5"]
    assert [t.shape[1] for t in out.values()] == [8, 12, 16]
    assert [t.shape[-2:] for t in out.values()] == [t.shape[-2:] for t in feats.values()]
    preds = head(out)
    anchors = gen((96, 64), [tuple(t.shape[-2:]) for t in out.values()])
    a = anchors.shape[0]
    assert preds["bbox_deltas"].shape == (2, a, 4)
    assert preds["objectness"].shape == (2, a) and preds["cls_logits"].shape == (2, a, 3)
    assert torch.sigmoid(preds["objectness"]).mean() < 0.05  # prior 0.01


def test_head_order_is_location_major_anchor_minor():
    _, _, _, head = _parts(num_classes=1)
    feats = {k: torch.zeros(1, c, 2, 2) for k, c in zip(("a", "b", "c"), (8, 12, 16))}
    with torch.no_grad():
        conv = head.preds[0]
        conv.bias.zero_()
        conv.bias.view(3, 6)[1, 4] = 5.0  # objectness of shape 1 at every cell
    obj = head(feats)["objectness"][0, : 2 * 2 * 3].view(4, 3)
    assert torch.equal(obj[:, 1], torch.full((4,), 5.0)) and (obj[:, [0, 2]] == 0).all()


def test_odd_sizes_upsample_to_the_finer_map():
    backbone, neck, _, _ = _parts()
    out = neck(backbone(torch.rand(1, 3, 72, 40)))
    assert [tuple(t.shape[-2:]) for t in out.values()] == [(9, 5), (5, 3), (3, 2)]


def test_bad_configs_say_what_is_wrong():
    with pytest.raises(Exception, match="one count >= 0 per stage"):
        build_component("backbone", {"type": "darknet", "channels": [8, 16], "blocks": [1]})
    with pytest.raises(Exception, match="same number of levels"):
        build_component(
            "head", {"type": "yolo_head"}, in_channels=(8,), num_anchors=(3, 3), num_classes=2
        )
