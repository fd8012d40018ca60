import pytest
import torch
import torchvision
from torchvision.ops import FrozenBatchNorm2d

from anchorage.core import CheckpointError, SpecError, build_component
from anchorage.core.interfaces import FeatureSpec
from anchorage.plugins.backbones.torchvision_features import build_feature_extractor


def test_resnet18_default_levels_and_torchvision_outputs(tmp_path):
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "r18.pth"
    torch.save(net.state_dict(), path)
    bb = build_component(
        "backbone", {"type": "torchvision_features", "model": "resnet18", "weights_path": str(path)}
    ).eval()
    assert bb.feature_info == [
        FeatureSpec("c2", 64, 4),
        FeatureSpec("c3", 128, 8),
        FeatureSpec("c4", 256, 16),
        FeatureSpec("c5", 512, 32),
    ]
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        out = bb(x)
        ref = net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x))))))
    assert list(out) == ["c2", "c3", "c4", "c5"]
    torch.testing.assert_close(out["c3"], ref)
    assert "body.layer1.0.conv1.weight" in bb.state_dict()


def test_frozen_bn_and_frozen_stages():
    bb = build_component(
        "backbone",
        {
            "type": "torchvision_features",
            "model": "resnet18",
            "norm": "frozen_bn",
            "frozen_stages": 2,
        },
    )
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in bb.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in bb.modules())
    grads = {n: p.requires_grad for n, p in bb.named_parameters()}
    assert not grads["body.conv1.weight"] and not grads["body.layer1.0.conv1.weight"]
    assert grads["body.layer2.0.conv1.weight"]


def test_build_feature_extractor_measures_info():
    net = torchvision.models.mobilenet_v3_small(weights=None)
    body, info = build_feature_extractor(net, {"features.3": "a", "features.12": "b"})
    assert [(f.name, f.stride) for f in info] == [("a", 8), ("b", 32)]
    assert info[1].channels == 576


def test_clear_errors(tmp_path):
    with pytest.raises(SpecError, match="unknown torchvision classification model"):
        build_component("backbone", {"type": "torchvision_features", "model": "resnet_18"})
    with pytest.raises(SpecError, match="no default return_nodes"):
        build_component("backbone", {"type": "torchvision_features", "model": "mobilenet_v3_small"})
    with pytest.raises(SpecError, match="return_nodes"):
        build_component(
            "backbone",
            {"type": "torchvision_features", "model": "resnet18", "return_nodes": {"nope": "x"}},
        )
    with pytest.raises(CheckpointError, match="not found"):
        build_component(
            "backbone",
            {
                "type": "torchvision_features",
                "model": "resnet18",
                "weights_path": str(tmp_path / "x"),
            },
        )
