"""fcn_resnet50: converted torchvision weights give torchvision's logits (spec + converter)."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.segmentation import fcn_resnet50

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


def test_fcn_resnet50_matches_torchvision() -> None:
    torch.manual_seed(0)
    tv = fcn_resnet50(weights=None, weights_backbone=None, aux_loss=True, num_classes=21)
    _randomize_batchnorm(tv)
    tv.eval()
    model = build_model(load_spec("specs/fcn_resnet50_coco.yaml")).eval()
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
