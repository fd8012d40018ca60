"""Converted torchvision Faster/Mask R-CNN weights give torchvision's outputs and losses.

Random init (fixed seed, ``weights=None``, ``weights_backbone=None``; torchvision then uses
plain BatchNorm and trains every layer, so our specs are overridden to ``norm: bn``,
``trainable_layers: 5``), small images of different sizes, ``min_size`` 192. Every property is
checked on a ResNet-18 FPN twin (torchvision's ``FasterRCNN`` / ``MaskRCNN`` classes over
``resnet_fpn_backbone("resnet18")``, built as ``*_resnet50_fpn`` builds its ResNet-50) and,
marked slow, on the full-size ResNet-50 models of the specs.

Train mode: both samplers are made deterministic — ours with ``order: first``, torchvision's
``BalancedPositiveNegativeSampler`` replaced by ``FirstSampler`` below (the same rule: the
first positives / negatives in index order) — and torch's RNG is seeded identically before both
forwards (the shared ``GeneralizedRCNNTransform`` draws its training size from it).
"""

from __future__ import annotations

import attrs
import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

from anchorage.core import build_model, load_spec
from anchorage.plugins.models.convert_rcnn import convert_torchvision_rcnn

C = 4
MIN, MAX = 192, 256
# proposals kept after the RPN's NMS at test time, detections per image: fewer on the quick
# ResNet-18 twin (its RoI heads dominate its time), the earlier values on ResNet-50
LIMITS = {18: (100, 20), 50: (300, 40)}
TOL = 1e-4


class FirstSampler(BalancedPositiveNegativeSampler):
    """torchvision's sampler with ``randperm`` replaced by 'the first ones in index order'."""

    def __call__(self, matched_idxs: list[torch.Tensor]) -> tuple[list, list]:
        pos_masks, neg_masks = [], []
        for m in matched_idxs:
            pos, neg = torch.where(m >= 1)[0], torch.where(m == 0)[0]
            n_pos = min(pos.numel(), int(self.batch_size_per_image * self.positive_fraction))
            n_neg = min(neg.numel(), self.batch_size_per_image - n_pos)
            pm, nm = torch.zeros_like(m, dtype=torch.uint8), torch.zeros_like(m, dtype=torch.uint8)
            pm[pos[:n_pos]] = 1
            nm[neg[:n_neg]] = 1
            pos_masks.append(pm)
            neg_masks.append(nm)
        return pos_masks, neg_masks


DEPTHS = [18, pytest.param(50, marks=pytest.mark.slow)]


def _torchvision(masks: bool, depth: int, **kwargs: object) -> torch.nn.Module:
    detection = torchvision.models.detection
    if depth == 50:
        ctor = detection.maskrcnn_resnet50_fpn if masks else detection.fasterrcnn_resnet50_fpn
        return ctor(weights=None, weights_backbone=None, **kwargs)
    # what *_resnet50_fpn(weights=None) does, over another ResNet
    backbone = resnet_fpn_backbone(
        backbone_name=f"resnet{depth}", weights=None, norm_layer=nn.BatchNorm2d, trainable_layers=5
    )
    return (detection.MaskRCNN if masks else detection.FasterRCNN)(backbone, **kwargs)


def _pair(masks: bool, depth: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    post_nms, dets = LIMITS[depth]
    torch.manual_seed(0)
    tv = _torchvision(
        masks,
        depth,
        num_classes=C + 1,
        min_size=MIN,
        max_size=MAX,
        rpn_post_nms_top_n_test=post_nms,
        box_detections_per_img=dets,
    )
    with torch.no_grad():  # random fc layers saturate the softmax: exact ties, ill-defined NMS
        tv.roi_heads.box_predictor.cls_score.weight.mul_(0.01)
    tv.rpn.fg_bg_sampler = FirstSampler(256, 0.5)
    tv.roi_heads.fg_bg_sampler = FirstSampler(512, 0.25)
    name = "mask_rcnn_r50_fpn_coco" if masks else "faster_rcnn_r50_fpn_coco"
    spec = load_spec(
        f"specs/{name}.yaml",
        overrides=[
            f"model.num_classes={C}",
            f"model.preprocess.min_size=[{MIN}]",
            f"model.preprocess.max_size={MAX}",
            f"model.backbone.type=resnet{depth}",
            "model.backbone.norm=bn",
            "model.backbone.trainable_layers=5",
            f"model.rpn.proposals.post_nms_top_n_test={post_nms}",
            f"model.roi_box.postprocessor.detections_per_img={dets}",
            "model.rpn.sampler.order=first",
            "model.roi_box.sampler.order=first",
        ],
    )
    ours = build_model(spec)
    ours.load_state_dict(convert_torchvision_rcnn(tv.state_dict()), strict=True)
    return tv, ours


def _images() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.rand(3, 150, 200, generator=g), torch.rand(3, 190, 125, generator=g)]


def _set_score_thresh(tv: torch.nn.Module, ours: torch.nn.Module, thresh: float) -> None:
    tv.roi_heads.score_thresh = thresh
    post = ours.roi_box.postprocessor
    post.cfg = attrs.evolve(post.cfg, score_thresh=thresh)


def _canonical(result: dict) -> dict:
    """Detections sorted by score, then label and box (the order of exactly tied scores is
    not defined by either model)."""
    keys = torch.cat([result["boxes"], result["labels"][:, None].double()], 1).double()
    order = sorted(range(len(keys)), key=lambda i: (-float(result["scores"][i]), *keys[i].tolist()))
    return {k: v[order] for k, v in result.items()}


def _assert_same(expected: list[dict], got: list[dict]) -> None:
    assert len(expected) == len(got)
    for e, g in zip(expected, got):
        e, g = _canonical(e), _canonical(g)
        assert set(g) == set(e), (set(g), set(e))
        for key in e:
            assert g[key].shape == e[key].shape, (key, g[key].shape, e[key].shape)
            assert g[key].dtype == e[key].dtype, key
            if e[key].numel():
                diff = (g[key].double() - e[key].double()).abs().max().item()
                assert diff <= TOL, f"{key}: max abs difference {diff}"


@pytest.fixture(scope="module", params=DEPTHS, ids=lambda d: f"r{d}")
def mask_pair(request: pytest.FixtureRequest) -> tuple[torch.nn.Module, torch.nn.Module]:
    return _pair(masks=True, depth=request.param)


@pytest.mark.parametrize("paste", ["auto", "batched"])
def test_mask_rcnn_eval_matches_torchvision_with_an_empty_image(
    mask_pair: tuple, paste: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tv, ours = mask_pair
    tv.eval()
    ours.eval()
    # batched: the paste a GPU uses (no host reads), run here on the CPU
    monkeypatch.setattr(ours.roi_mask.paste, "method", paste)
    images = _images()
    with torch.no_grad():
        first = tv(images)
        best = [float(r["scores"].max()) for r in first]
        assert all(len(r["boxes"]) for r in first), "random init must give detections"
        # A threshold between the two images' best scores: one image keeps detections, the
        # other has none.
        _set_score_thresh(tv, ours, (best[0] + best[1]) / 2)
        expected, got = tv(images), ours(images)
    _set_score_thresh(tv, ours, 0.05)
    counts = sorted(len(r["boxes"]) for r in expected)
    assert counts[0] == 0 and counts[1] > 0, counts
    assert [tuple(r["masks"].shape[-2:]) for r in got] == [(150, 200), (190, 125)]
    _assert_same(expected, got)


def test_mask_rcnn_train_losses_match_torchvision(mask_pair: tuple) -> None:
    tv, ours = mask_pair
    tv.train()
    ours.train()
    images = _images()
    boxes = [
        torch.tensor([[10.0, 20, 100, 130], [120, 30, 190, 140]]),
        torch.tensor([[30.0, 40, 110, 180]]),
    ]
    targets = []
    for im, b, labels in zip(images, boxes, ([1, 3], [2])):
        masks = torch.zeros(len(b), *im.shape[-2:], dtype=torch.uint8)
        for i, (x1, y1, x2, y2) in enumerate(b.long().tolist()):
            masks[i, y1:y2, x1 + 5 : x2] = 1
        targets.append({"boxes": b, "labels": torch.tensor(labels), "masks": masks})
    torch.manual_seed(5)
    expected = tv(images, [dict(t) for t in targets])
    torch.manual_seed(5)
    got = ours(images, [dict(t) for t in targets])
    assert (
        set(got)
        == set(expected)
        == {
            "loss_objectness",
            "loss_rpn_box_reg",
            "loss_classifier",
            "loss_box_reg",
            "loss_mask",
        }
    )
    for key in expected:
        want, have = float(expected[key].detach()), float(got[key].detach())
        assert abs(have - want) <= TOL, (key, have, want)
        assert want > 0, key


@pytest.mark.parametrize("depth", DEPTHS, ids=lambda d: f"r{d}")
def test_faster_rcnn_eval_matches_torchvision(depth: int) -> None:
    tv, ours = _pair(masks=False, depth=depth)
    tv.eval()
    ours.eval()
    images = _images()
    with torch.no_grad():
        expected, got = tv(images), ours(images)
    assert all(len(r["boxes"]) == LIMITS[depth][1] for r in expected)
    _assert_same(expected, got)
