"""RetinaNet and FCOS specs vs torchvision: converted weights give torchvision's detections
(boxes, scores, labels ≤ 1e-4) on images of different sizes, and the same train losses.

Fast versions use a ResNet-18 FPN (torchvision ``resnet_fpn_backbone``) at a small input; the
full-size ``retinanet_resnet50_fpn`` / ``fcos_resnet50_fpn`` (``weights=None``: BatchNorm2d)
ones are marked ``slow``. torchvision's heads have one class column per label value 0..C;
column 0 (background) is never a target, and trained torchvision weights never score it, so
for the detections the reference models get a dead column 0 (bias -30) as trained ones have.
The losses are compared with a live column 0 (bias 0.5 in both models): its focal term counts
in torchvision's sum and in ours (``background_column: true``).
"""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet18
from torchvision.models.detection import FCOS, RetinaNet, fcos_resnet50_fpn, retinanet_resnet50_fpn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from anchorage.core import build_model, load_checkpoint, load_spec
from anchorage.plugins.models.convert import convert_weights

C = 3  # classes; torchvision heads get C + 1 columns


def _perturb(tv: torch.nn.Module, columns: int) -> None:
    """Spread the class scores (random init puts them all near the 0.01 prior) so that
    detections pass the thresholds; kill column 0 as trained torchvision weights have it."""
    logits = tv.head.classification_head.cls_logits
    with torch.no_grad():  # scores vary by location too, so no two candidates tie
        logits.weight.normal_(std=0.05)
        logits.bias.copy_(torch.randn_like(logits.bias) * 1.5 - 1.0)
        logits.bias.view(-1, columns)[:, 0] = -30.0


def _small(kind: str) -> torch.nn.Module:
    backbone = BackboneWithFPN(
        resnet18(weights=None, norm_layer=FrozenBatchNorm2d),
        return_layers={"layer2": "0", "layer3": "1", "layer4": "2"},
        in_channels_list=[128, 256, 512],
        out_channels=64,
        extra_blocks=LastLevelP6P7(64, 64),
    )
    cls = RetinaNet if kind == "retinanet" else FCOS
    extra = {"score_thresh": 0.05} if kind == "retinanet" else {"score_thresh": 0.2}
    return cls(backbone, num_classes=C + 1, min_size=128, max_size=192, **extra)


def _ours(kind: str, tv: torch.nn.Module, tmp_path, overrides: list[str]) -> torch.nn.Module:
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    spec = load_spec(f"specs/{kind}_r50_fpn_coco.yaml", [f"model.num_classes={C}", *overrides])
    out = convert_weights("torchvision", tmp_path / "tv.pth", spec, tmp_path / "ours.pt")
    model = build_model(spec)
    load_checkpoint(model, out)
    return model


def _batch():
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 100, 140, generator=g), torch.rand(3, 128, 96, generator=g)]
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0], [70.0, 20.0, 130.0, 90.0]]),
         "labels": torch.tensor([1, 3])},
        {"boxes": torch.tensor([[5.0, 30.0, 40.0, 50.0]]), "labels": torch.tensor([2])},
    ]  # fmt: skip
    return images, targets


def _canonical(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detections by score, ties (e.g. identical zero-padding locations) by box: NMS keeps
    tied candidates in an arbitrary order."""
    order = torch.argsort(d["boxes"][:, 0], stable=True)
    order = order[torch.argsort(d["scores"][order], descending=True, stable=True)]
    return {k: v[order] for k, v in d.items()}


def _compare(tv: torch.nn.Module, ours: torch.nn.Module, min_dets: int = 5) -> None:
    images, targets = _batch()
    tv.eval(), ours.eval()
    with torch.no_grad():
        expected, got = tv(images), ours(images)
    for e, o in zip(map(_canonical, expected), map(_canonical, got)):
        assert len(e["scores"]) >= min_dets
        assert torch.equal(o["labels"], e["labels"])
        torch.testing.assert_close(o["boxes"], e["boxes"], atol=1e-4, rtol=0)
        torch.testing.assert_close(o["scores"], e["scores"], atol=1e-4, rtol=0)
    with torch.no_grad():  # column 0 alive: its loss term must be summed as torchvision does
        for model in (tv, ours):
            model.head.classification_head.cls_logits.bias.view(-1, C + 1)[:, 0] = 0.5
    tv.train(), ours.train()
    torch.manual_seed(0)
    tv_losses = tv(images, targets)
    torch.manual_seed(0)
    our_losses = ours(images, targets)
    assert set(our_losses) == {f"loss_{k}" for k in tv_losses}
    for k, v in tv_losses.items():
        torch.testing.assert_close(our_losses[f"loss_{k}"], v, atol=1e-4, rtol=1e-4)


SMALL = [
    "model.backbone={type: resnet18, return_layers: [layer2, layer3, layer4]}",
    "model.neck.out_channels=64",
    "model.preprocess.min_size=[128]",
    "model.preprocess.max_size=192",
]


@pytest.mark.parametrize("kind", ["retinanet", "fcos"])
def test_small_twin_matches_torchvision(kind, tmp_path):
    torch.manual_seed(0)
    tv = _small(kind)
    _perturb(tv, C + 1)
    _compare(tv, _ours(kind, tv, tmp_path, SMALL))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["retinanet", "fcos"])
def test_full_size_twin_matches_torchvision(kind, tmp_path):
    torch.manual_seed(0)
    build = retinanet_resnet50_fpn if kind == "retinanet" else fcos_resnet50_fpn
    tv = build(weights=None, weights_backbone=None, num_classes=C + 1)
    _perturb(tv, C + 1)
    _compare(tv, _ours(kind, tv, tmp_path, ["model.backbone.norm=bn"]))
