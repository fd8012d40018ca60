import torch
from torchvision.models.detection.ssd import SSDFeatureExtractorVGG
from torchvision.models.vgg import cfgs, make_layers

from anchorage.core import build_component
from anchorage.core.testing import check_backbone


def test_tiny_ssd_levels_match_d2l():
    bb = build_component("backbone", {"type": "tiny_ssd_base"})
    check_backbone(bb, size=(256, 256), batch=1)
    out = bb(torch.rand(2, 3, 256, 256))
    assert [tuple(t.shape[1:]) for t in out.values()] == [
        (64, 32, 32),
        (128, 16, 16),
        (128, 8, 8),
        (128, 4, 4),
        (128, 1, 1),
    ]


def test_vgg16_ssd_is_torchvision_module_for_module(tmp_path):
    torch.manual_seed(0)
    ref = SSDFeatureExtractorVGG(make_layers(cfgs["D"]), highres=False).eval()
    ours = build_component("backbone", {"type": "vgg16_ssd"}).eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    check_backbone(ours, size=(300, 300), batch=1)
    x = torch.rand(1, 3, 300, 300)
    with torch.no_grad():
        got, expected = ours(x), ref(x)
    assert [(f.name, f.channels) for f in ours.feature_info][:2] == [
        ("conv4_3", 512),
        ("fc7", 1024),
    ]
    for a, b in zip(got.values(), expected.values()):
        assert torch.equal(a, b)


def test_vgg16_ssd_frozen_stages_and_imagenet_weights(tmp_path):
    torch.manual_seed(1)
    features = make_layers(cfgs["D"])
    path = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    bb = build_component(
        "backbone", {"type": "vgg16_ssd", "frozen_stages": 2, "weights_path": str(path)}
    )
    assert torch.equal(bb.features[0].weight, features[0].weight)
    assert torch.equal(bb.extra[0][1].weight, features[24].weight)  # conv5_1
    grads = {n: p.requires_grad for n, p in bb.named_parameters()}
    assert not grads["features.7.weight"] and grads["features.10.weight"]
