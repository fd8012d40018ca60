"""FCN: converted torchvision weights give torchvision's logits (spec + converter).

Checked on a ResNet-18 twin (torchvision's ``FCN`` class over ResNet-18 without dilation, which
``BasicBlock`` does not support) and, marked slow, on ``fcn_resnet50`` and its spec.
"""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet18
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation import fcn_resnet50
from torchvision.models.segmentation.fcn import FCN, FCNHead

from anchorage.core import build_model, load_spec
from anchorage.core.errors import CheckpointError
from anchorage.plugins.models.convert import CONVERTERS
from anchorage.plugins.models.convert_fcn import convert_fcn


def _randomize_batchnorm(model: torch.nn.Module) -> None:
    """Non-trivial BN statistics, so that a wrong BN mapping would show."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


def _twin(depth: int) -> tuple[torch.nn.Module, list[str]]:
    """torchvision FCN (aux head, 21 classes) and the overrides that make our spec its twin."""
    if depth == 50:
        return fcn_resnet50(weights=None, weights_backbone=None, aux_loss=True, num_classes=21), []
    body = IntermediateLayerGetter(resnet18(weights=None), {"layer3": "aux", "layer4": "out"})
    overrides = [
        "model.backbone.type=resnet18",
        "model.backbone.replace_stride_with_dilation=[false,false,false]",
    ]
    return FCN(body, FCNHead(512, 21), FCNHead(256, 21)), overrides


@pytest.mark.parametrize("depth", [18, pytest.param(50, marks=pytest.mark.slow)])
def test_fcn_matches_torchvision(depth: int) -> None:
    torch.manual_seed(0)
    tv, overrides = _twin(depth)
    _randomize_batchnorm(tv)
    tv.eval()
    model = build_model(load_spec("specs/fcn_resnet50_coco.yaml", overrides)).eval()
    model.load_state_dict(convert_fcn(tv.state_dict()))
    image = torch.rand(3, 96, 128)
    # torchvision's FCN takes normalised input; ours normalises inside (ImageNet mean/std)
    x = ((image - model.mean) / model.std)[None]
    with torch.no_grad():
        ref = tv(x)
        (out,) = model([image])
        aux = model.aux_head(model.backbone(x), (96, 128))["logits"]
    assert out["sem_seg"].shape == (21, 96, 128)
    assert (out["sem_seg"] - ref["out"][0]).abs().max() <= 1e-4
    assert (aux - ref["aux"]).abs().max() <= 1e-4


def test_registered_for_convert_weights() -> None:
    assert CONVERTERS[("torchvision", "semantic_segmentation")] is convert_fcn


def test_unknown_key_is_rejected() -> None:
    with pytest.raises(CheckpointError, match="fc.weight"):
        convert_fcn({"fc.weight": torch.zeros(1)})
