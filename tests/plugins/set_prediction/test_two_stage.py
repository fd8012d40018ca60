"""Two-stage Deformable DETR: the encoder proposals, their query selection, the one matcher
call for decoder layers and proposals, and the encoder loss terms (the numbers against
transformers are in test_deformable_detr_transformers.py)."""

from __future__ import annotations

import pytest
import torch
from support.sync_sites import HOST_ONLY, tiny_batch, train_step

from anchorage.core import build_component, build_model, load_spec
from anchorage.core.host_sync import record_host_syncs
from anchorage.core.interfaces import Anchors, GroundTruth
from anchorage.plugins.set_prediction.two_stage import encoder_proposals, proposal_embedding

TWO_STAGE = [
    "model.transformer.hidden_dim=32", "model.transformer.ffn_dim=64",
    "model.transformer.encoder_layers=1", "model.transformer.decoder_layers=2",
    "model.transformer.two_stage=true", "model.transformer.with_box_refine=true",
    "model.head.shared=false",
]  # fmt: skip


def _transformer(**params):  # noqa: ANN003, ANN202
    cfg = {
        "type": "deformable_detr_transformer", "hidden_dim": 16, "num_heads": 2,
        "encoder_layers": 1, "decoder_layers": 2, "ffn_dim": 32, "encoder_points": 2,
        "decoder_points": 2, "with_box_refine": True, "two_stage": True, **params,
    }  # fmt: skip
    return build_component("transformer", cfg, num_queries=4, num_levels=2)


def test_proposals_sit_on_pixel_centres_with_level_sizes():
    shapes = [(4, 4), (2, 2)]
    padding = torch.zeros(2, 20, dtype=torch.bool)
    level0 = padding[1, :16].view(4, 4)
    level0[:, 2:] = True  # the second image covers the left half of level 0
    padding[1, 16:] = torch.tensor([False, True, False, True])
    proposals, valid = encoder_proposals(padding, shapes, torch.float32)
    assert proposals.shape == (2, 20, 4) and valid.shape == (2, 20)
    assert torch.allclose(proposals[0, :4, 0], torch.tensor([0.125, 0.375, 0.625, 0.875]))
    assert torch.allclose(proposals[1, :2, 0], torch.tensor([0.25, 0.75]))  # of 2 valid columns
    assert (proposals[:, :16, 2:] == 0.05).all() and (proposals[:, 16:, 2:] == 0.1).all()
    assert not valid[1][padding[1]].any()  # never at padding
    assert valid[0].all() and valid[1][~padding[1]].all()
    padding = torch.zeros(1, 100 * 100, dtype=torch.bool)  # centres by the border: unusable
    _, valid = encoder_proposals(padding, [(100, 100)], torch.float32)
    assert not valid[0, 0] and valid[0, 101]


def test_proposal_embedding_is_a_sine_embedding_per_coordinate():
    boxes = torch.rand(2, 3, 4)
    emb = proposal_embedding(boxes, 8)
    assert emb.shape == (2, 3, 32)
    torch.testing.assert_close(emb[..., 0], (boxes[..., 0] * 2 * torch.pi).sin())
    torch.testing.assert_close(emb[..., 8], (boxes[..., 1] * 2 * torch.pi).sin())


def test_queries_are_the_top_proposals_detached():
    t = _transformer().eval()
    head = build_component(
        "head", {"type": "detr_head", "score": "sigmoid", "shared": False},
        hidden_dim=16, num_classes=3, num_layers=2, encoder_proposals=True,
    )  # fmt: skip
    sizes = [(6, 6), (3, 3)]
    features = [torch.randn(2, 16, h, w) for h, w in sizes]
    masks = [torch.zeros(2, h, w, dtype=torch.bool) for h, w in sizes]
    out = t(features, masks, [torch.zeros_like(f) for f in features], head.refiner(),
            head.proposer())  # fmt: skip
    assert out.encoder_logits.shape == (2, 45, 3) and out.encoder_boxes.shape == (2, 45, 4)
    top = out.encoder_logits[..., 0].topk(4, dim=1)[1]
    expected = torch.gather(out.encoder_boxes, 1, top[..., None].expand(-1, -1, 4))
    assert torch.equal(out.references[0], expected) and not out.references.requires_grad
    assert out.references.shape == (2, 2, 4, 4)
    assert not hasattr(t, "query_embed") and not hasattr(t, "reference_points")
    with pytest.raises(ValueError, match="two_stage needs the head's propose"):
        t(features, masks, [torch.zeros_like(f) for f in features], head.refiner())
    with pytest.raises(ValueError, match="fewer than the 4 queries"):
        tiny = [torch.randn(1, 16, 1, 1)] * 2
        t(tiny, [torch.zeros(1, 1, 1, dtype=torch.bool)] * 2, tiny, head.refiner(), head.proposer())


def test_match_groups_equals_separate_calls_with_one_host_copy():
    matcher = build_component("matcher", {"type": "hungarian", "class_cost": "focal"})
    g = torch.Generator().manual_seed(0)
    gt = GroundTruth(
        torch.tensor([[[0.1, 0.1, 0.5, 0.5], [0.4, 0.2, 0.9, 0.7]],
                      [[0.2, 0.3, 0.6, 0.8], [0.0, 0.0, 0.0, 0.0]]]),
        torch.tensor([[1, 2], [3, -1]]), torch.tensor([[True, True], [True, False]]),
    )  # fmt: skip
    problems = []
    for q, agnostic in ((5, False), (30, True)):
        boxes = torch.cat([0.2 + 0.6 * torch.rand(2, q, 2, generator=g),
                           0.1 + 0.3 * torch.rand(2, q, 2, generator=g)], -1)  # fmt: skip
        preds = {"logits": torch.randn(2, q, 3, generator=g), "boxes": boxes}
        problems.append(
            (Anchors.single_level(boxes), gt.class_agnostic() if agnostic else gt, preds)
        )
    empty = GroundTruth(gt.boxes[:, :0], gt.labels[:, :0], gt.valid[:, :0])
    problems.append((problems[0][0], empty, problems[0][2]))
    with record_host_syncs() as syncs:
        together = matcher.match_groups(problems)
    assert [s.op for s in syncs].count("Tensor.cpu") == 1, syncs
    for (anchors, g_, preds), got in zip(problems, together):
        assert torch.equal(got.matched, matcher(anchors, g_, predictions=preds).matched)
    assert (together[2].matched == -1).all()


def test_train_step_has_encoder_terms_and_one_host_sync():
    pytest.importorskip("scipy")
    torch.manual_seed(0)
    model = build_model(load_spec("specs/deformable_detr_r18_shapes.yaml", overrides=TWO_STAGE))
    images, targets = tiny_batch()
    model.train()
    terms = model(images, targets)
    assert {"loss_classification_enc", "loss_bbox_l1_enc", "loss_giou_enc"} <= set(terms)
    assert len(terms) == 3 * 3  # two decoder layers + the encoder proposals
    sum(terms.values()).backward()
    assert model.head.proposal_classifier.weight.grad.abs().sum() > 0
    assert model.transformer.two_stage.query_proj.weight.grad.abs().sum() > 0
    train_step(model, images, targets)
    with record_host_syncs() as train:
        train_step(model, images, targets)
    model.eval()
    with torch.no_grad(), record_host_syncs() as infer:
        found = model(images)
    sites = {(s.file, s.function) for s in train} - HOST_ONLY
    assert sites == {("hungarian.py", "_solve")}, sites
    assert [s.op for s in train if s.function == "_solve"].count("Tensor.cpu") == 1
    assert not {(s.file, s.function) for s in infer} - HOST_ONLY
    assert len(found) == len(images)


def test_a_wrong_proposer_return_names_the_head():
    from anchorage.core.errors import PluginError

    torch.manual_seed(0)
    model = build_model(load_spec("specs/deformable_detr_r18_shapes.yaml", overrides=TWO_STAGE))
    right = model.head.propose

    def no_scores(query, proposals):
        return {k: v for k, v in right(query, proposals).items() if k != "scores"}

    model.head.propose = no_scores
    images, _ = tiny_batch()
    with pytest.raises(
        PluginError, match=r"model\.head \(detr_head.*proposer\(\) returned .*scores"
    ):
        model.eval()(images)
