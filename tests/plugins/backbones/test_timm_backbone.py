"""The ``timm`` backbone: levels, detectors built on it, local checkpoints, freezing, errors."""

import json
import sys

import pytest
import torch

timm = pytest.importorskip("timm")

from anchorage.core import (  # noqa: E402
    CheckpointError,
    SpecError,
    build_component,
    build_model,
    check_spec,
    load_spec,
)
from anchorage.core.interfaces import FeatureSpec  # noqa: E402
from anchorage.core.testing import check_detections, check_entry, tiny_batch  # noqa: E402

SWIN = "swin_tiny_patch4_window7_224"
VIT = "vit_tiny_patch16_224"
# name → (extra backbone parameters, expected (name, stride) per default level)
FAMILIES = {
    "convnext_atto": ({}, [("c2", 4), ("c3", 8), ("c4", 16), ("c5", 32)]),
    "tf_efficientnet_lite0": ({}, [("c1", 2), ("c2", 4), ("c3", 8), ("c4", 16), ("c5", 32)]),
    "regnetx_002": ({}, [("c1", 2), ("c2", 4), ("c3", 8), ("c4", 16), ("c5", 32)]),
    "mobilenetv3_small_050": ({}, [("c1", 2), ("c2", 4), ("c3", 8), ("c4", 16), ("c5", 32)]),
    SWIN: (
        {"model_kwargs": {"strict_img_size": False}},
        [("c2", 4), ("c3", 8), ("c4", 16), ("c5", 32)],
    ),
    VIT: (
        {"img_size": 64, "model_kwargs": {"dynamic_img_size": True}},
        [("c4_9", 16), ("c4_10", 16), ("c4_11", 16)],
    ),
}
# timm level indices of strides 4..32 (Faster R-CNN: p2..p5) per family; RetinaNet takes 8..32
PYRAMID = {
    "convnext_atto": [0, 1, 2, 3],
    "tf_efficientnet_lite0": [1, 2, 3, 4],
    "regnetx_002": [1, 2, 3, 4],
    "mobilenetv3_small_050": [1, 2, 3, 4],
    SWIN: [0, 1, 2, 3],
}
# a plain ViT has one stride (16): its last block (c4) goes through ViTDet's simple feature
# pyramid, p3..p6 in the shipped RetinaNet spec, p2..p6 for Faster R-CNN
VIT_SPEC = "specs/retinanet_vit_tiny_sfp_shapes.yaml"
VIT_BACKBONE = {"img_size": 128, "out_indices": [11], "model_kwargs": {"dynamic_img_size": True}}
SFP = {"type": "simple_feature_pyramid", "out_channels": 64}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def timm_backbone(name: str, **params):
    return build_component("backbone", {"type": "timm", "model_name": name, **params})


@pytest.mark.parametrize("name", list(FAMILIES))
def test_feature_info_matches_outputs(name):
    extra, levels = FAMILIES[name]
    bb = timm_backbone(name, **extra).eval()
    assert [(f.name, f.stride) for f in bb.feature_info] == levels
    assert [f.channels for f in bb.feature_info] == bb.body.feature_info.channels()
    with torch.no_grad():
        out = bb(torch.rand(2, 3, 64, 96))  # not square: an NHWC map would show here
    assert list(out) == [f.name for f in bb.feature_info]
    for f in bb.feature_info:
        assert out[f.name].shape == (2, f.channels, 64 // f.stride, 96 // f.stride), f.name


def _detector(kind: str, name: str) -> torch.nn.Module:
    if name == VIT:
        return _vit_detector(kind)
    extra, _ = FAMILIES[name]
    indices = PYRAMID[name] if kind == "two_stage" else PYRAMID[name][1:]
    backbone = {"type": "timm", "model_name": name, "out_indices": indices, "frozen_stages": 1}
    overrides = [f"model.backbone={json.dumps({**backbone, **extra})}"]
    if kind == "two_stage":
        overrides.append("model.preprocess={fixed_size: [128, 128], size_divisible: 32}")
        spec = load_spec("specs/faster_rcnn_r18_fpn_bccd.yaml", overrides)
    else:
        spec = load_spec("specs/retinanet_convnext_tiny_shapes.yaml", overrides)
    return build_model(spec)


def _vit_detector(kind: str) -> torch.nn.Module:
    if kind == "single_shot":
        return build_model(load_spec(VIT_SPEC, ["model.backbone.frozen_stages=1"]))
    backbone = {"type": "timm", "model_name": VIT, "frozen_stages": 1, **VIT_BACKBONE}
    overrides = [
        f"model.backbone={json.dumps(backbone)}",
        f"model.neck={json.dumps(SFP)}",
        "model.preprocess={fixed_size: [128, 128], size_divisible: 32}",
    ]
    return build_model(load_spec("specs/faster_rcnn_r18_fpn_bccd.yaml", overrides))


@pytest.mark.parametrize("kind", ["single_shot", "two_stage"])
@pytest.mark.parametrize("name", [*PYRAMID, VIT])
def test_detector_trains_a_step_and_evaluates(kind, name):
    torch.manual_seed(0)
    model = _detector(kind, name).train()
    bb = model.backbone
    assert model.neck.in_feature_info == bb.feature_info  # channels/strides from timm
    images, targets = tiny_batch(3)  # the second image has no boxes
    losses = model(images, targets)
    total = sum(losses.values())
    assert torch.isfinite(total) and len(losses) >= 2
    total.backward()
    frozen = {n for n, p in bb.named_parameters() if not p.requires_grad}
    assert frozen and all(p.grad is None for n, p in bb.named_parameters() if n in frozen)
    no_grad = [n for n, p in bb.named_parameters() if n not in frozen and p.grad is None]
    assert not no_grad, f"no gradient reaches {no_grad[:5]}"
    model.eval()
    with torch.no_grad():
        out = model(images)
    check_detections(out, 2, [tuple(im.shape[-2:]) for im in images], 3)


def test_shipped_spec_sizes_the_neck_from_feature_info():
    spec = load_spec("specs/retinanet_convnext_tiny_shapes.yaml")
    neck = spec.model.params["neck"]
    assert set(neck.params) == {"out_channels", "extra_block"}  # no channel list typed
    model = build_model(spec)
    assert model.neck.in_feature_info == [
        FeatureSpec("c3", 192, 8),
        FeatureSpec("c4", 384, 16),
        FeatureSpec("c5", 768, 32),
    ]


def test_vit_spec_builds_the_pyramid_from_the_last_block():
    model = check_spec(load_spec(VIT_SPEC))
    assert model.neck.in_feature_info == [FeatureSpec("c4", 192, 16)]
    assert [(f.name, f.stride) for f in model.neck.feature_info] == [
        ("p3", 8),
        ("p4", 16),
        ("p5", 32),
        ("p6", 64),
    ]
    model.eval()
    with torch.no_grad():  # dynamic_img_size: a size other than img_size (128) goes through
        feats = model.neck(model.backbone(torch.rand(1, 3, 96, 160)))
    assert [tuple(t.shape[-2:]) for t in feats.values()] == [(12, 20), (6, 10), (3, 5), (2, 3)]
    # timm's default ViT levels (three blocks, all stride 16): the pyramid reads the last
    bb = timm_backbone(VIT, img_size=64)
    neck = build_component("neck", SFP, in_feature_info=tuple(bb.feature_info))
    assert neck.in_feature == "c4_11" and neck.feature_info[0] == FeatureSpec("p2", 64, 4)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_classifier_state_dict_loads(tmp_path, suffix):
    torch.manual_seed(0)
    clf = timm.create_model("convnext_atto", pretrained=False).eval()
    path = tmp_path / f"convnext_atto{suffix}"
    if suffix == ".pth":
        torch.save(clf.state_dict(), path)
    else:
        safetensors = pytest.importorskip("safetensors.torch")
        safetensors.save_file(clf.state_dict(), str(path))
    bb = timm_backbone("convnext_atto", out_indices=[1, 2], checkpoint_path=str(path)).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out = bb(x)
        ref = clf.forward_intermediates(x, indices=[1, 2], intermediates_only=True)
    for got, want in zip(out.values(), ref):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("name", "extra"), [("mobilenetv3_small_050", {}), (VIT, {"img_size": 64})]
)
def test_backbone_state_dict_round_trip(tmp_path, name, extra):
    torch.manual_seed(0)
    first = timm_backbone(name, **extra).eval()
    path = tmp_path / "backbone.pt"
    torch.save(first.state_dict(), path)
    torch.manual_seed(1)
    second = timm_backbone(name, checkpoint_path=str(path), **extra).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(first(x).values(), second(x).values()):
            assert torch.equal(a, b)


def test_checkpoint_errors_name_the_file_and_keys(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pth: file not found"):
        timm_backbone("convnext_atto", checkpoint_path=str(tmp_path / "nope.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"bad.pth: torch.load\(weights_only=True\) cannot"):
        timm_backbone("convnext_atto", checkpoint_path=str(bad))
    other = tmp_path / "other.pth"
    torch.save(timm.create_model("mobilenetv3_small_050").state_dict(), other)
    with pytest.raises(CheckpointError, match=r"other.pth does not fit.*missing \[stem_0.weight"):
        timm_backbone("convnext_atto", checkpoint_path=str(other))
    state = timm.create_model("convnext_atto").state_dict()
    state["stages.0.blocks.0.gamma2"] = torch.zeros(1)
    extra = tmp_path / "extra.pth"
    torch.save(state, extra)
    with pytest.raises(CheckpointError, match=r"unexpected \[stages.0.blocks.0.gamma2\]"):
        timm_backbone("convnext_atto", checkpoint_path=str(extra))
    wider = tmp_path / "femto.pth"
    torch.save(timm.create_model("convnext_femto").state_dict(), wider)
    with pytest.raises(CheckpointError, match=r"shape mismatch: \[stem_0.weight: file \(48"):
        timm_backbone("convnext_atto", checkpoint_path=str(wider))


def test_meta_device_build_reads_no_checkpoint(tmp_path, recwarn):
    path = tmp_path / "m.pt"
    torch.save({"not": torch.zeros(1)}, path)  # would not fit: only its existence is checked
    with torch.device("meta"):
        bb = timm_backbone("mobilenetv3_small_050", checkpoint_path=str(path))
        with pytest.raises(CheckpointError, match="file not found"):
            timm_backbone("mobilenetv3_small_050", checkpoint_path=str(tmp_path / "x.pt"))
    assert all(p.is_meta for p in bb.parameters()) and not recwarn.list


def test_spec_errors():
    with pytest.raises(SpecError, match="nothing is downloaded at run time; give checkpoint_path"):
        timm_backbone("convnext_atto", pretrained=True)
    with pytest.raises(SpecError, match="unknown timm model 'convnext_atoo'.*convnext_atto"):
        timm_backbone("convnext_atoo")
    with pytest.raises(SpecError, match="model_kwargs may not set"):
        timm_backbone("convnext_atto", model_kwargs={"pretrained_cfg_overlay": "x"})
    with pytest.raises(SpecError, match="frozen_stages=5, but the model has 4 stages"):
        timm_backbone("convnext_atto", frozen_stages=5)
    with pytest.raises(SpecError, match="timm.create_model.*img_size"):
        timm_backbone("convnext_atto", img_size=64)  # a ConvNeXt takes no img_size
    with pytest.raises(SpecError, match=r"this model's levels: 0 \(stages.0, stride 4\)"):
        timm_backbone("convnext_atto", out_indices=[7])
    with pytest.raises(SpecError, match="expected distinct levels fine to coarse"):
        timm_backbone("convnext_atto", out_indices=[2, 1])


def test_missing_timm_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    with pytest.raises(SpecError, match=r"pip install 'anchorage\[timm\]'"):
        timm_backbone("convnext_atto")


def _frozen(bb) -> list[str]:
    return [n[len("body.") :] for n, p in bb.named_parameters() if not p.requires_grad]


def _roots(names: list[str], depth: int) -> list[str]:
    return list(dict.fromkeys(".".join(n.split(".")[:depth]) for n in names))


def test_frozen_stages_freeze_the_stem_and_first_stages():
    assert _frozen(timm_backbone("convnext_atto")) == []
    bb = timm_backbone("convnext_atto", frozen_stages=2)
    assert _roots(_frozen(bb), 1) == ["stem_0", "stem_1", "stages_0", "stages_1"]
    assert _roots(_frozen(timm_backbone("regnetx_002", frozen_stages=0)), 1) == ["stem"]
    # EfficientNet levels: blocks.0 (stride 2, stem), blocks.1, blocks.2, blocks.4, blocks.6
    bb = timm_backbone("tf_efficientnet_lite0", frozen_stages=3)
    assert _roots(_frozen(bb), 2) == ["conv_stem.weight", "bn1.weight", "bn1.bias"] + [
        f"blocks.{i}" for i in range(5)
    ]
    bb = timm_backbone(VIT, img_size=64, frozen_stages=2)
    frozen = _frozen(bb)
    assert _roots(frozen, 2) == [
        "model.cls_token",
        "model.pos_embed",
        "model.patch_embed",
        "model.blocks",
    ]
    assert _roots([n for n in frozen if "blocks" in n], 3) == ["model.blocks.0", "model.blocks.1"]
    bb = timm_backbone("mobilenetv3_small_050", frozen_stages=4)
    assert all(not p.requires_grad for p in bb.parameters())


def test_frozen_bn_keeps_outputs_and_activations(tmp_path):
    from timm.layers import BatchNormAct2d, FrozenBatchNormAct2d
    from torchvision.ops import FrozenBatchNorm2d

    torch.manual_seed(0)
    plain = timm_backbone("mobilenetv3_small_050").eval()
    path = tmp_path / "m.pt"
    torch.save(plain.state_dict(), path)
    frozen = timm_backbone("mobilenetv3_small_050", norm="frozen_bn", checkpoint_path=str(path))
    kinds = {type(m) for m in frozen.modules()}
    assert FrozenBatchNormAct2d in kinds and FrozenBatchNorm2d in {k.__mro__[1] for k in kinds}
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, BatchNormAct2d)) for m in frozen.modules())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(plain(x).values(), frozen.train()(x).values()):
            torch.testing.assert_close(a, b)
    convnext = timm_backbone("convnext_atto", norm="frozen_bn")  # LayerNorm: left alone
    assert sum(p.requires_grad for p in convnext.parameters()) == len(list(convnext.parameters()))


def test_frozen_stages_keep_their_batchnorm_in_eval():
    bb = timm_backbone("regnetx_002", frozen_stages=1).train()
    assert not bb.body.stem.bn.training and not bb.body.s1.b1.conv1.bn.training
    assert bb.body.s2.b1.conv1.bn.training


def test_conformance_kit():
    check_entry("backbone", "timm")
