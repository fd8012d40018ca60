"""FPN neck: torchvision's FeaturePyramidNetwork with LastLevelMaxPool, declared levels."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from anchorage.core.build import build_component
from anchorage.core.interfaces import FeatureSpec

INFO = (FeatureSpec("c3", 8, 8), FeatureSpec("c4", 16, 16), FeatureSpec("c5", 32, 32))


def test_same_as_torchvision_fpn() -> None:
    torch.manual_seed(0)
    neck = build_component("neck", {"type": "fpn", "out_channels": 12}, in_feature_info=INFO)
    assert [(f.name, f.channels, f.stride) for f in neck.feature_info] == [
        ("p3", 12, 8),
        ("p4", 12, 16),
        ("p5", 12, 32),
        ("p6", 12, 64),
    ]
    tv = FeaturePyramidNetwork([8, 16, 32], 12, extra_blocks=LastLevelMaxPool())
    tv.load_state_dict({k[len("fpn.") :]: v for k, v in neck.state_dict().items()})
    feats = {f.name: torch.rand(2, f.channels, 64 // f.stride, 96 // f.stride) for f in INFO}
    ours = neck(feats)
    theirs = tv(dict(feats))
    assert list(ours) == ["p3", "p4", "p5", "p6"]
    for a, b in zip(ours.values(), theirs.values()):
        torch.testing.assert_close(a, b)


def test_without_extra_level() -> None:
    neck = build_component(
        "neck", {"type": "fpn", "out_channels": 4, "extra_block": "none"}, in_feature_info=INFO
    )
    assert [f.name for f in neck.feature_info] == ["p3", "p4", "p5"]


@pytest.mark.parametrize("kind,in_channels", [("p6p7", 12), ("p6p7_c5", 32)])
def test_p6p7_same_as_torchvision(kind: str, in_channels: int) -> None:
    torch.manual_seed(0)
    neck = build_component(
        "neck", {"type": "fpn", "out_channels": 12, "extra_block": kind}, in_feature_info=INFO
    )
    assert [(f.name, f.stride) for f in neck.feature_info] == [
        ("p3", 8),
        ("p4", 16),
        ("p5", 32),
        ("p6", 64),
        ("p7", 128),
    ]
    tv = FeaturePyramidNetwork([8, 16, 32], 12, extra_blocks=LastLevelP6P7(in_channels, 12))
    tv.load_state_dict({k[len("fpn.") :]: v for k, v in neck.state_dict().items()})
    feats = {f.name: torch.rand(2, f.channels, 256 // f.stride, 256 // f.stride) for f in INFO}
    ours, theirs = neck(feats), tv(dict(feats))
    assert list(ours) == ["p3", "p4", "p5", "p6", "p7"]
    assert ours["p7"].shape[-2:] == (2, 2)
    for a, b in zip(ours.values(), theirs.values()):
        torch.testing.assert_close(a, b)
