"""ResNet backbones: torchvision's network and parameter names, freezing, dilation, weights."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.ops import FrozenBatchNorm2d

from anchorage.core.build import build_component
from anchorage.core.errors import CheckpointError


def test_outputs_equal_torchvision_layers() -> None:
    torch.manual_seed(0)
    ours = build_component("backbone", {"type": "resnet18", "norm": "bn"}).eval()
    net = torchvision.models.resnet18(weights=None).eval()
    net.load_state_dict({k: v for k, v in ours.body.state_dict().items()}, strict=False)
    x = torch.rand(1, 3, 64, 96)
    out = ours(x)
    with torch.no_grad():
        y = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        for name, layer in zip(
            ["c2", "c3", "c4", "c5"], [net.layer1, net.layer2, net.layer3, net.layer4]
        ):
            y = layer(y)
            torch.testing.assert_close(out[name], y)
    assert [f.stride for f in ours.feature_info] == [4, 8, 16, 32]
    assert [f.channels for f in ours.feature_info] == [64, 128, 256, 512]


def test_frozen_bn_and_trainable_layers() -> None:
    b = build_component("backbone", {"type": "resnet50", "trainable_layers": 2})
    assert any(isinstance(m, FrozenBatchNorm2d) for m in b.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in b.modules())
    trainable = {n.split(".")[0] for n, p in b.body.named_parameters() if p.requires_grad}
    assert trainable == {"layer3", "layer4"}
    b5 = build_component("backbone", {"type": "resnet18", "norm": "bn", "trainable_layers": 5})
    assert all(p.requires_grad for p in b5.parameters())
    b0 = build_component("backbone", {"type": "resnet18", "trainable_layers": 0})
    assert not any(p.requires_grad for p in b0.parameters())


def test_dilation_keeps_stride_and_return_layers() -> None:
    b = build_component(
        "backbone",
        {
            "type": "resnet50",
            "replace_stride_with_dilation": [False, True, True],
            "return_layers": ["layer2", "layer4"],
        },
    )
    assert [(f.name, f.channels, f.stride) for f in b.feature_info] == [
        ("c3", 512, 8),
        ("c5", 2048, 8),
    ]
    out = b(torch.rand(1, 3, 64, 64))
    assert out["c5"].shape == (1, 2048, 8, 8)


def test_weights_path(tmp_path) -> None:
    torch.manual_seed(3)
    net = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)
    b = build_component("backbone", {"type": "resnet18", "weights_path": str(path)})
    torch.testing.assert_close(b.body.state_dict()["conv1.weight"], net.conv1.weight)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="conv1.weight"):
        build_component("backbone", {"type": "resnet18", "weights_path": str(tmp_path / "bad.pth")})
    with pytest.raises(CheckpointError):
        build_component("backbone", {"type": "resnet18", "weights_path": str(tmp_path / "no.pth")})


def test_bad_return_layers_is_a_spec_error() -> None:
    from anchorage.core.errors import SpecError

    with pytest.raises(SpecError, match="return_layers"):
        build_component("backbone", {"type": "resnet18", "return_layers": ["layer4", "layer1"]})
