"""FCN heads: bilinear-initialised transposed conv, output at the image size, torchvision parity."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.segmentation.fcn import FCNHead as TorchvisionFCNHead

from anchorage.core import build_component
from anchorage.plugins.heads.fcn_head import bilinear_kernel


@pytest.mark.parametrize("stride", [2, 8, 32])
def test_bilinear_kernel_upsamples_like_interpolate(stride: int) -> None:
    x = torch.randn(1, 3, 5, 6)
    up = F.conv_transpose2d(x, bilinear_kernel(3, 2 * stride), stride=stride, padding=stride // 2)
    ref = F.interpolate(x, scale_factor=stride, mode="bilinear", align_corners=False)
    assert up.shape == ref.shape
    # identical away from the border (where interpolate clamps and the conv sees zeros)
    inner = (..., slice(stride, -stride), slice(stride, -stride))
    torch.testing.assert_close(up[inner], ref[inner], atol=1e-5, rtol=1e-5)


def test_fcn_head_output_size_and_init() -> None:
    head = build_component(
        "head",
        {"type": "fcn_head"},
        in_channels=16,
        num_classes=3,
        stride=32,
        in_feature="c5",
    )
    assert head.upsample.kernel_size == (64, 64) and head.upsample.stride == (32, 32)
    assert head.upsample.padding == (16, 16)
    torch.testing.assert_close(head.upsample.weight, bilinear_kernel(4, 64))
    feats = {"c5": torch.randn(2, 16, 3, 4, requires_grad=True)}
    out = head(feats, (70, 100))["logits"]  # 3x4 cells of 32 px cover 70x100
    assert out.shape == (2, 4, 70, 100)
    out.sum().backward()
    assert head.score.weight.grad is not None and head.upsample.weight.grad is not None


def test_tv_fcn_head_matches_torchvision() -> None:
    torch.manual_seed(0)
    tv = TorchvisionFCNHead(32, 5).eval()
    ours = build_component(
        "head", {"type": "tv_fcn_head"}, in_channels=32, num_classes=4, stride=8, in_feature="x"
    ).eval()
    ours.layers.load_state_dict(tv.state_dict())
    x = torch.randn(1, 32, 6, 7)
    with torch.no_grad():
        ref = F.interpolate(tv(x), size=(45, 53), mode="bilinear", align_corners=False)
        torch.testing.assert_close(ours({"x": x}, (45, 53))["logits"], ref)
