"""``set_prediction`` with Deformable DETR's components equals transformers'
``DeformableDetrForObjectDetection``: detections (top-k over queries x classes) and every
decoder layer's loss terms, with and without iterative box refinement and two-stage (which
refines boxes), on two images of different sizes.

Two-stage's encoder terms: transformers 5.x returns the encoder proposals
(``enc_outputs_class`` / ``enc_outputs_coord_logits``) but its loss leaves them out; the
expected ``_enc`` terms are the paper's (the reference implementation's ``SetCriterion``):
transformers' own Deformable DETR matcher and criterion on those proposals with every gt label
set to the first class."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import torch
import yaml

transformers = pytest.importorskip("transformers")
pytest.importorskip("scipy")

from anchorage.core import build_component, build_model, load_checkpoint, load_spec  # noqa: E402
from anchorage.core.cli import run_tool  # noqa: E402
from anchorage.plugins.models.set_prediction import padding_mask  # noqa: E402
from anchorage.plugins.set_prediction.convert import convert_transformers_detr  # noqa: E402

from .test_detr_transformers import _images, _randomise_norms, _targets  # noqa: E402

NUM_CLASSES, QUERIES, DIM, TOPK = 3, 12, 32, 20
# (with_box_refine, two_stage) of each variant
MODES = {"plain": (False, False), "box_refine": (True, False), "two_stage": (True, True)}


def _hf(refine: bool, two_stage: bool = False):  # noqa: ANN202
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
        two_stage=two_stage,
        two_stage_num_proposals=QUERIES,
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


def _ours(refine: bool, two_stage: bool = False) -> torch.nn.Module:
    return build_component("model", _spec(refine, two_stage))


def _spec(refine: bool, two_stage: bool = False) -> dict:
    return {
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
            "two_stage": two_stage,
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
    }


def _pair(mode: str):  # noqa: ANN202
    hf = _hf(*MODES[mode])
    ours = _ours(*MODES[mode])
    ours.load_state_dict(convert_transformers_detr(hf.state_dict()), strict=True)
    return hf, ours


@pytest.mark.parametrize("mode", list(MODES))
def test_detections_equal_transformers(mode: str) -> None:
    hf, ours = _pair(mode)
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
    if MODES[mode][1]:  # every encoder position's proposal, before the top-k
        torch.testing.assert_close(mine["encoder_logits"], theirs.enc_outputs_class, atol=1e-4,
                                   rtol=0)  # fmt: skip
        their_boxes = theirs.enc_outputs_coord_logits.sigmoid()
        torch.testing.assert_close(mine["encoder_boxes"], their_boxes, atol=1e-4, rtol=0)
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


@pytest.mark.parametrize("mode", list(MODES))
def test_training_losses_equal_transformers(mode: str) -> None:
    """Every decoder layer's terms with transformers' matcher and focal criterion (their
    classification weight is fixed at 1, ours is set to 1 to compare); two-stage, the encoder
    proposals' terms too (module docstring)."""
    hf, ours = _pair(mode)
    hf.train(), ours.train()
    images, targets = _images(), _targets()
    batch = ours.preprocess(images, targets)
    mask = (~padding_mask(batch.images, batch.image_sizes)).long()
    labels = []
    for t, (h, w) in zip(batch.targets, batch.image_sizes):
        xyxy = t["boxes"] / torch.tensor([w, h, w, h])
        cxcywh = torch.cat([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], dim=1)
        labels.append({"class_labels": t["labels"] - 1, "boxes": cxcywh})
    out = hf(pixel_values=batch.images, pixel_mask=mask, labels=labels)
    theirs = dict(out.loss_dict)
    if MODES[mode][1]:
        theirs |= {f"{k}_enc": v for k, v in _their_encoder_terms(hf, out, labels).items()}
    mine = ours(images, targets)
    names = {
        "loss_classification": "loss_ce",
        "loss_bbox_l1": "loss_bbox",
        "loss_giou": "loss_giou",
    }
    weights = {"loss_classification": 1.0, "loss_bbox_l1": 5.0, "loss_giou": 2.0}
    suffixes = [("", ""), ("_d0", "_0")] + ([("_enc", "_enc")] if MODES[mode][1] else [])
    assert len(mine) == 3 * len(suffixes), sorted(mine)
    for ours_name, their_name in names.items():
        for mine_suffix, their_suffix in suffixes:
            want = weights[ours_name] * theirs[their_name + their_suffix]
            got = mine[ours_name + mine_suffix]
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def _their_encoder_terms(hf, out, labels: list[dict]) -> dict[str, torch.Tensor]:  # noqa: ANN001
    """The reference implementation's encoder loss with transformers' parts: its Deformable
    DETR matcher and criterion on the encoder proposals against class-agnostic targets."""
    from transformers.loss.loss_deformable_detr import (
        DeformableDetrHungarianMatcher,
        DeformableDetrImageLoss,
    )

    cfg = hf.config
    matcher = DeformableDetrHungarianMatcher(
        class_cost=cfg.class_cost, bbox_cost=cfg.bbox_cost, giou_cost=cfg.giou_cost
    )
    criterion = DeformableDetrImageLoss(
        matcher=matcher, num_classes=cfg.num_labels, focal_alpha=cfg.focal_alpha,
        losses=["labels", "boxes"],
    )  # fmt: skip
    agnostic = [{**t, "class_labels": torch.zeros_like(t["class_labels"])} for t in labels]
    proposals = {
        "logits": out.enc_outputs_class,
        "pred_boxes": out.enc_outputs_coord_logits.sigmoid(),
    }
    return criterion(proposals, agnostic)


def test_two_stage_needs_box_refinement() -> None:
    """As transformers' config: the two-stage variant refines boxes; a one-line spec error."""
    from anchorage.core.errors import SpecError

    with pytest.raises(SpecError, match=r"two_stage: true needs with_box_refine: true") as err:
        _ours(refine=False, two_stage=True)
    assert "transformer" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(Exception, match="with_box_refine must be True"):  # noqa: B017
        _hf(refine=False, two_stage=True)


def test_convert_weights_tool_converts_two_stage(tmp_path: Path) -> None:
    """``tools/convert_weights.py --from transformers`` on a two-stage checkpoint (it used to
    refuse them) gives a checkpoint whose model predicts what transformers' does."""
    hf = _hf(refine=True, two_stage=True).eval()
    src, spec_path, out = tmp_path / "hf.pth", tmp_path / "two_stage.yaml", tmp_path / "ours.pt"
    torch.save(hf.state_dict(), src)
    spec_path.write_text(yaml.safe_dump({"model": _spec(refine=True, two_stage=True)}))
    tool = Path(__file__).resolve().parents[3] / "tools" / "convert_weights.py"
    main = runpy.run_path(str(tool))["main"]
    argv = [str(src), "--from", "transformers", "--spec", str(spec_path), "--out", str(out)]
    assert run_tool(main, argv) == 0
    ours = build_model(load_spec(spec_path)).eval()
    load_checkpoint(ours, out)
    batch = ours.preprocess(_images())
    mask = (~padding_mask(batch.images, batch.image_sizes)).long()
    with torch.no_grad():
        theirs = hf(pixel_values=batch.images, pixel_mask=mask)
        mine = ours.predict(batch.images, batch.image_sizes)
    torch.testing.assert_close(mine["boxes"][-1], theirs.pred_boxes, atol=1e-4, rtol=0)
