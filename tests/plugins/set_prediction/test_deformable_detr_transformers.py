"""``set_prediction`` with Deformable DETR's components equals transformers'
``DeformableDetrForObjectDetection``: detections (top-k over queries x classes) and every
decoder layer's loss terms, with and without iterative box refinement, on two images of
different sizes."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("scipy")

from anchorage.core import build_component  # noqa: E402
from anchorage.plugins.models.set_prediction import padding_mask  # noqa: E402
from anchorage.plugins.set_prediction.convert import convert_transformers_detr  # noqa: E402

from .test_detr_transformers import _images, _randomise_norms, _targets  # noqa: E402

NUM_CLASSES, QUERIES, DIM, TOPK = 3, 12, 32, 20


def _hf(refine: bool):  # noqa: ANN202
    cfg = transformers.DeformableDetrConfig(
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        backbone_config=transformers.ResNetConfig(
            depths=[2, 2, 2, 2],
            hidden_sizes=[64, 128, 256, 512],
            layer_type="basic",
            out_features=["stage2", "stage3", "stage4"],
        ),
        num_labels=NUM_CLASSES,
        num_queries=QUERIES,
        d_model=DIM,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_feature_levels=4,
        encoder_n_points=2,
        decoder_n_points=2,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        with_box_refine=refine,
        auxiliary_loss=True,
        class_cost=2,
    )
    torch.manual_seed(0)
    model = transformers.DeformableDetrForObjectDetection(cfg)
    _randomise_norms(model)
    with torch.no_grad():  # random heads: the zero-initialised box branch would hide a mix-up
        for p in (*model.class_embed.parameters(), *model.bbox_embed.parameters()):
            p.add_(0.05 * torch.randn(p.shape))
    return model


def _ours(refine: bool) -> torch.nn.Module:
    return build_component(
        "model",
        {
            "type": "set_prediction",
            "num_classes": NUM_CLASSES,
            "num_queries": QUERIES,
            "preprocess": {"min_size": [96], "max_size": 160, "size_divisible": 1},
            "backbone": {
                "type": "resnet18",
                "return_layers": ["layer2", "layer3", "layer4"],
                "trainable_layers": 5,
            },
            "projection_norm": "group_norm",
            "extra_levels": 1,
            "positional_encoding": {"type": "sine", "offset": -0.5},
            "transformer": {
                "type": "deformable_detr_transformer",
                "hidden_dim": DIM,
                "num_heads": 4,
                "encoder_layers": 2,
                "decoder_layers": 2,
                "ffn_dim": 64,
                "dropout": 0.0,
                "encoder_points": 2,
                "decoder_points": 2,
                "with_box_refine": refine,
            },
            "head": {"type": "detr_head", "score": "sigmoid", "shared": not refine},
            "matcher": {"type": "hungarian", "class_cost": "focal", "class_weight": 2.0},
            "loss": {"type": "set_criterion", "classification": "focal", "class_weight": 1.0},
            "postprocessor": {
                "type": "set_topk",
                "score": "sigmoid",
                "select": "topk",
                "topk": TOPK,
            },
        },
    )


def _pair(refine: bool):  # noqa: ANN202
    hf = _hf(refine)
    ours = _ours(refine)
    ours.load_state_dict(convert_transformers_detr(hf.state_dict()), strict=True)
    return hf, ours


@pytest.mark.parametrize("refine", [False, True], ids=["plain", "box_refine"])
def test_detections_equal_transformers(refine: bool) -> None:
    hf, ours = _pair(refine)
    hf.eval(), ours.eval()
    images = _images()
    batch = ours.preprocess(images)
    mask = (~padding_mask(batch.images, batch.image_sizes)).long()
    with torch.no_grad():
        theirs = hf(pixel_values=batch.images, pixel_mask=mask)
        mine = ours.predict(batch.images, batch.image_sizes)
        found = ours(images)
    torch.testing.assert_close(mine["logits"][-1], theirs.logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(mine["boxes"][-1], theirs.pred_boxes, atol=1e-4, rtol=0)
    processor = transformers.DeformableDetrImageProcessor()
    sizes = [tuple(im.shape[-2:]) for im in images]
    expected = processor.post_process_object_detection(
        theirs, threshold=0.0, target_sizes=sizes, top_k=TOPK
    )
    for got, want in zip(found, expected):
        torch.testing.assert_close(got["scores"], want["scores"], atol=1e-4, rtol=0)
        assert torch.equal(got["labels"], want["labels"] + 1)
        torch.testing.assert_close(got["boxes"], want["boxes"], atol=1e-3, rtol=1e-5)
        assert len(got["boxes"]) == TOPK


@pytest.mark.parametrize("refine", [False, True], ids=["plain", "box_refine"])
def test_training_losses_equal_transformers(refine: bool) -> None:
    """Every decoder layer's terms with transformers' matcher and focal criterion (their
    classification weight is fixed at 1, ours is set to 1 to compare)."""
    hf, ours = _pair(refine)
    hf.train(), ours.train()
    images, targets = _images(), _targets()
    batch = ours.preprocess(images, targets)
    mask = (~padding_mask(batch.images, batch.image_sizes)).long()
    labels = []
    for t, (h, w) in zip(batch.targets, batch.image_sizes):
        xyxy = t["boxes"] / torch.tensor([w, h, w, h])
        cxcywh = torch.cat([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], dim=1)
        labels.append({"class_labels": t["labels"] - 1, "boxes": cxcywh})
    theirs = hf(pixel_values=batch.images, pixel_mask=mask, labels=labels).loss_dict
    mine = ours(images, targets)
    names = {
        "loss_classification": "loss_ce",
        "loss_bbox_l1": "loss_bbox",
        "loss_giou": "loss_giou",
    }
    weights = {"loss_classification": 1.0, "loss_bbox_l1": 5.0, "loss_giou": 2.0}
    assert len(mine) == 6
    for ours_name, their_name in names.items():
        for mine_key, their_key in (
            (ours_name, their_name),
            (f"{ours_name}_d0", f"{their_name}_0"),
        ):
            want = weights[ours_name] * theirs[their_key]
            torch.testing.assert_close(mine[mine_key], want, atol=1e-5, rtol=1e-5)
