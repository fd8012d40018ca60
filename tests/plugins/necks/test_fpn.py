"""FPN neck: torchvision's FeaturePyramidNetwork with LastLevelMaxPool, declared levels."""

from __future__ import annotations

import torch
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

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
