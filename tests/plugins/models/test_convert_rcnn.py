"""torchvision R-CNN weights convert through tools' convert_weights into a two_stage checkpoint."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops import FrozenBatchNorm2d

from anchorage.core import build_model, load_checkpoint, load_spec
from anchorage.core.errors import CheckpointError
from anchorage.plugins.models.convert import CONVERTERS, convert_weights, reconcile_batchnorm
from anchorage.plugins.models.convert_rcnn import convert_torchvision_rcnn


def test_convert_weights_file_with_legacy_keys(tmp_path) -> None:
    torch.manual_seed(0)
    backbone = resnet_fpn_backbone(
        backbone_name="resnet18", weights=None, norm_layer=FrozenBatchNorm2d, trainable_layers=3
    )
    tv = FasterRCNN(backbone, num_classes=4, min_size=64, max_size=96).eval()
    state = tv.state_dict()
    # torchvision < 0.11 files name the RPN conv without its Sequential wrapper.
    state["rpn.head.conv.weight"] = state.pop("rpn.head.conv.0.0.weight")
    state["rpn.head.conv.bias"] = state.pop("rpn.head.conv.0.0.bias")
    torch.save(state, tmp_path / "tv.pth")
    spec = load_spec(
        "specs/faster_rcnn_r50_fpn_coco.yaml",
        overrides=[
            "model.backbone.type=resnet18",
            "model.num_classes=3",
            "model.preprocess.min_size=[64]",
            "model.preprocess.max_size=96",
        ],
    )
    assert CONVERTERS["torchvision", "two_stage"] is convert_torchvision_rcnn
    out = convert_weights("torchvision", tmp_path / "tv.pth", spec, tmp_path / "ours.pt")
    model = build_model(spec).eval()
    load_checkpoint(model, out)
    images = [torch.rand(3, 60, 70)]
    with torch.no_grad():
        expected, got = tv(images)[0], model(images)[0]
    assert len(expected["boxes"]) > 0
    torch.testing.assert_close(got["boxes"], expected["boxes"])
    torch.testing.assert_close(got["scores"], expected["scores"])


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(CheckpointError, match="roi_heads.keypoint_head"):
        convert_torchvision_rcnn({"roi_heads.keypoint_head.0.weight": torch.zeros(1)})


@pytest.mark.parametrize("norm", ["frozen_bn", "bn"])
def test_from_scratch_torchvision_batchnorm_converts(tmp_path, norm: str) -> None:
    """torchvision builds BatchNorm2d with weights=None: its num_batches_tracked must not block."""
    torch.manual_seed(0)
    backbone = resnet_fpn_backbone(
        backbone_name="resnet18", weights=None, norm_layer=nn.BatchNorm2d, trainable_layers=3
    )
    tv = FasterRCNN(backbone, num_classes=4, min_size=64, max_size=96).eval()
    assert any(k.endswith("num_batches_tracked") for k in tv.state_dict())
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    spec = load_spec(
        "specs/faster_rcnn_r50_fpn_coco.yaml",
        overrides=[
            "model.backbone.type=resnet18",
            f"model.backbone.norm={norm}",
            "model.num_classes=3",
            "model.preprocess.min_size=[64]",
            "model.preprocess.max_size=96",
        ],
    )
    out = convert_weights("torchvision", tmp_path / "tv.pth", spec, tmp_path / "ours.pt")
    model = build_model(spec).eval()
    load_checkpoint(model, out)
    images = [torch.rand(3, 60, 70)]
    with torch.no_grad():
        expected, got = tv(images)[0], model(images)[0]
    assert len(expected["boxes"]) > 0
    torch.testing.assert_close(got["boxes"], expected["boxes"])
    torch.testing.assert_close(got["scores"], expected["scores"])


def test_reconcile_batchnorm_drops_and_fills_counters() -> None:
    frozen = {"bn.weight": torch.ones(2), "bn.running_mean": torch.zeros(2)}
    counted = {**frozen, "bn.num_batches_tracked": torch.tensor(7)}
    assert set(reconcile_batchnorm(counted, frozen)) == set(frozen)
    filled = reconcile_batchnorm(frozen, counted)
    assert filled["bn.num_batches_tracked"].item() == 0
    assert filled["bn.num_batches_tracked"].dtype == torch.int64
    # an unrelated stray counter in the source is left for check_state_fits to report
    assert "x.num_batches_tracked" not in reconcile_batchnorm(
        {"x.num_batches_tracked": torch.tensor(1)}, frozen
    )
