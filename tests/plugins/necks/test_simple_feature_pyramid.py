"""simple_feature_pyramid: ViTDet's pyramid from one stride-16 map; levels, layout, errors."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from anchorage.core import SpecError, build_component, check_spec, load_spec
from anchorage.core.interfaces import FeatureSpec
from anchorage.core.testing import check_entry

VIT = (FeatureSpec("c4_9", 32, 16), FeatureSpec("c4_10", 32, 16), FeatureSpec("c4_11", 32, 16))


def sfp(info=VIT, **params):
    data = {"type": "simple_feature_pyramid", "out_channels": 12, **params}
    return build_component("neck", data, in_feature_info=tuple(info))


def test_levels_from_the_last_input_level() -> None:
    neck = sfp()
    assert [(f.name, f.channels, f.stride) for f in neck.feature_info] == [
        ("p2", 12, 4),
        ("p3", 12, 8),
        ("p4", 12, 16),
        ("p5", 12, 32),
        ("p6", 12, 64),
    ]
    assert neck.in_feature == "c4_11" and neck.in_feature_info == list(VIT)
    last = torch.rand(2, 32, 4, 6)  # a 64x96 image at stride 16
    nan = torch.full_like(last, float("nan"))
    out = neck.eval()({"c4_9": nan, "c4_10": nan, "c4_11": last})
    assert list(out) == ["p2", "p3", "p4", "p5", "p6"]
    sizes = [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
    assert [tuple(t.shape) for t in out.values()] == [(2, 12, *s) for s in sizes]
    assert all(torch.isfinite(t).all() for t in out.values())  # the other levels are not read
    only_last = neck({"c4_11": last})
    for a, b in zip(out.values(), only_last.values()):
        assert torch.equal(a, b)


def test_subset_of_scales_without_top_block_and_a_named_input() -> None:
    neck = sfp(scale_factors=[2.0, 1.0, 0.5], top_block="none", in_feature="c4_9")
    assert [(f.name, f.stride) for f in neck.feature_info] == [("p3", 8), ("p4", 16), ("p5", 32)]
    out = neck({"c4_9": torch.rand(1, 32, 5, 7)})
    assert [tuple(t.shape[-2:]) for t in out.values()] == [(10, 14), (5, 7), (2, 3)]
    neck = sfp([FeatureSpec("c5", 16, 32)], scale_factors=[1.0, 0.5])  # a stride-32 input
    assert [(f.name, f.stride) for f in neck.feature_info] == [("p5", 32), ("p6", 64), ("p7", 128)]


def _ln(x: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    """Channel LayerNorm written out: normalise each position over C, then scale and shift."""
    mean = x.mean(1, keepdim=True)
    var = x.var(1, keepdim=True, unbiased=False)
    y = (x - mean) / torch.sqrt(var + 1e-6)
    return y * norm.weight[:, None, None] + norm.bias[:, None, None]


def test_layout_is_vitdet() -> None:
    """Each level = resample (ViTDet's), 1×1 conv + LN, 3×3 conv + LN, written out here."""
    torch.manual_seed(0)
    neck = sfp().eval()
    x = torch.rand(2, 32, 4, 6)
    for stage in neck.stages.values():  # non-trivial norms
        for m in stage.modules():
            if isinstance(m, torch.nn.LayerNorm):
                torch.nn.init.normal_(m.weight)
                torch.nn.init.normal_(m.bias)
    p2 = neck.stages["p2"]
    up1, ln, _gelu, up2 = p2[:4]
    assert (up1.in_channels, up1.out_channels, up2.out_channels) == (32, 16, 8)
    y = F.conv_transpose2d(x, up1.weight, up1.bias, stride=2)
    y = F.conv_transpose2d(F.gelu(_ln(y, ln)), up2.weight, up2.bias, stride=2)
    p3 = neck.stages["p3"]
    inputs = {
        "p2": y,
        "p3": F.conv_transpose2d(x, p3[0].weight, p3[0].bias, stride=2),
        "p4": x,
        "p5": F.max_pool2d(x, 2, 2),
    }
    out = neck({"c4_11": x})
    for name, z in inputs.items():
        lateral, output = neck.stages[name][-2:]
        assert lateral[0].bias is None and lateral[0].kernel_size == (1, 1)
        assert output[0].bias is None and output[0].kernel_size == (3, 3)
        z = _ln(F.conv2d(z, lateral[0].weight), lateral[1])
        z = _ln(F.conv2d(z, output[0].weight, padding=1), output[1])
        torch.testing.assert_close(out[name], z, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out["p6"], out["p5"][:, :, ::2, ::2], rtol=0, atol=0)


def test_no_norm_gives_biased_convs_and_every_parameter_trains() -> None:
    neck = sfp(norm="none")
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in neck.modules())
    assert all(s[-1][0].bias is not None for s in neck.stages.values())
    neck = sfp()
    sum(t.sum() for t in neck({"c4_11": torch.rand(2, 32, 4, 4)}).values()).backward()
    assert all(p.grad is not None for p in neck.parameters())


@pytest.mark.parametrize(
    ("info", "params", "message"),
    [
        ((), {}, "neck: simple_feature_pyramid needs one input level .in_feature_info is empty"),
        (VIT, {"in_feature": "c5"}, r"in_feature: 'c5' is not a feature of .*\(c4_9, c4_10, c4"),
        (VIT, {"scale_factors": [3.0]}, r"scale_factors: expected one or more of \[4.0, 2.0"),
        (VIT, {"scale_factors": [1.0, 2.0]}, "expected distinct values, fine to coarse"),
        (VIT, {"scale_factors": []}, "scale_factors: expected one or more"),
        ([FeatureSpec("c1", 32, 2)], {}, "4.0 needs an input stride divisible by 4 .* stride 2"),
        ([FeatureSpec("c4", 6, 16)], {}, "channels divisible by 4; c4 has stride 16, 6 channels"),
    ],
)
def test_errors_say_what_was_expected(info, params, message) -> None:
    with pytest.raises(SpecError, match=message):
        sfp(info, **params)


NECK = {"type": "simple_feature_pyramid", "out_channels": 64}


def test_composition_in_a_dense_detector() -> None:
    """On ResNet-18's c3..c5, the pyramid is built from c5 (stride 32): p3..p7 as FPN's P6P7."""
    over = [f"model.neck={json.dumps(NECK)}"]
    model = check_spec(load_spec("retinanet_r18_fpn_shapes", over))
    assert [f.name for f in model.neck.in_feature_info] == ["c3", "c4", "c5"]
    assert model.neck.in_feature == "c5"
    assert [(f.name, f.stride) for f in model.neck.feature_info] == [
        ("p3", 8),
        ("p4", 16),
        ("p5", 32),
        ("p6", 64),
        ("p7", 128),
    ]
    spec = load_spec("retinanet_r18_fpn_shapes", [*over, "model.neck.top_block=none"])
    with pytest.raises(SpecError, match="5 .*but model.neck gives 4 feature levels"):
        check_spec(spec)  # the anchor generator's five levels vs the neck's four
    spec = load_spec("retinanet_r18_fpn_shapes", [*over, "model.neck.in_feature=c9"])
    with pytest.raises(SpecError, match="model.neck: in_feature: 'c9' is not a feature .*c3, c4"):
        check_spec(spec)


def test_conformance_kit() -> None:
    check_entry("neck", "simple_feature_pyramid")
