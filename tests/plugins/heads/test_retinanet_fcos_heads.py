"""retinanet_head / fcos_head: torchvision's parameter names and outputs, on shared weights."""

from functools import partial

import pytest
import torch
from torchvision.models.detection.fcos import FCOSHead as TVFCOSHead
from torchvision.models.detection.retinanet import RetinaNetHead as TVRetinaNetHead

from anchorage.core import build_component


def _build(name: str, anchors: int, **extra):
    return build_component(
        "head",
        {"type": name, **extra},
        in_channels=(32, 32, 32),
        num_anchors=(anchors,) * 3,
        num_classes=4,
    )


@pytest.mark.parametrize("norm", ["none", "group_norm"])
def test_retinanet_head_loads_torchvision_weights_and_agrees(norm):
    torch.manual_seed(0)
    ours = _build("retinanet_head", 9, norm=norm)
    kwargs = {"norm_layer": partial(torch.nn.GroupNorm, 32)} if norm == "group_norm" else {}
    tv = TVRetinaNetHead(32, 9, 5, **kwargs)
    assert set(ours.state_dict()) == set(tv.state_dict())
    ours.load_state_dict(tv.state_dict())
    maps = [torch.rand(2, 32, s, s + 1) for s in (8, 4, 2)]
    expected = tv(maps)
    got = ours(dict(zip(("p3", "p4", "p5"), maps)))
    assert got["cls_logits"].shape == (2, 9 * (8 * 9 + 4 * 5 + 2 * 3), 5)
    torch.testing.assert_close(got["cls_logits"], expected["cls_logits"], rtol=0, atol=0)
    torch.testing.assert_close(got["bbox_deltas"], expected["bbox_regression"], rtol=0, atol=0)


def test_shallower_retinanet_head_keeps_torchvisions_first_convs():
    full, two = _build("retinanet_head", 9), _build("retinanet_head", 9, num_convs=2)
    names = set(two.state_dict())
    assert names < set(full.state_dict())
    assert {n for n in names if ".conv." in n} == {
        f"{branch}.conv.{i}.0.{p}"
        for branch in ("classification_head", "regression_head")
        for i in (0, 1)
        for p in ("weight", "bias")
    }
    two.load_state_dict({k: v for k, v in full.state_dict().items() if k in names})
    out = two({"p3": torch.rand(1, 32, 4, 4)} | {f"p{i}": torch.rand(1, 32, 2, 2) for i in (4, 5)})
    assert out["cls_logits"].shape == (1, 9 * (16 + 4 + 4), 5)


def test_fcos_head_loads_torchvision_weights_and_agrees():
    torch.manual_seed(0)
    ours = _build("fcos_head", 1)
    tv = TVFCOSHead(32, 1, 5)
    assert set(ours.state_dict()) == set(tv.state_dict())
    ours.load_state_dict(tv.state_dict())
    maps = [torch.rand(2, 32, s, s) for s in (8, 4, 2)]
    expected = tv(maps)
    got = ours(dict(zip(("p3", "p4", "p5"), maps)))
    for ours_key, tv_key in (
        ("cls_logits", "cls_logits"),
        ("bbox_deltas", "bbox_regression"),
        ("centerness", "bbox_ctrness"),
    ):
        torch.testing.assert_close(got[ours_key], expected[tv_key], rtol=0, atol=0)
    assert (got["bbox_deltas"] >= 0).all()


def test_levels_must_share_channels():
    with pytest.raises(Exception, match="same channels and anchors per location"):
        build_component(
            "head",
            {"type": "retinanet_head"},
            in_channels=(32, 64),
            num_anchors=(9, 9),
            num_classes=2,
        )
    with pytest.raises(Exception, match="divisible by 32"):
        build_component(
            "head", {"type": "fcos_head"}, in_channels=(48,), num_anchors=(1,), num_classes=2
        )
