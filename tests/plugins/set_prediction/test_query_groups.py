"""Query groups (Group DETR, ``query_groups`` on both transformers): groups decode in isolation,
eval mode is group 0 alone, the loss of G groups is the mean of G one-group losses, still one
host sync per train step, and two-stage refuses more than one group."""

from __future__ import annotations

import pytest
import torch
from support.sync_sites import HOST_ONLY, tiny_batch, train_step

from anchorage.core import build_component, build_model, load_spec
from anchorage.core.errors import SpecError
from anchorage.core.host_sync import record_host_syncs
from anchorage.core.interfaces import GroundTruth
from anchorage.core.interfaces.set_prediction import SetDecoding, query_group_mask
from anchorage.core.slots import Slot, check_decoding
from anchorage.core.testing import check_entry
from anchorage.plugins.models.set_prediction import fold_query_groups, repeat_per_group
from anchorage.plugins.set_prediction.head import inverse_sigmoid

Q, G, D = 4, 3, 16
SMALL = {"hidden_dim": D, "num_heads": 2, "encoder_layers": 1, "decoder_layers": 2,
         "ffn_dim": 32, "dropout": 0.0}  # fmt: skip
TRANSFORMERS = {
    "detr": ({"type": "detr_transformer", "query_init": "learned", **SMALL}, 1),
    "deformable": (
        {"type": "deformable_detr_transformer", "encoder_points": 2, "decoder_points": 2, **SMALL},
        2,
    ),
    "box_refine": (
        {
            "type": "deformable_detr_transformer",
            "encoder_points": 2,
            "decoder_points": 2,
            "with_box_refine": True,
            **SMALL,
        },
        2,
    ),  # fmt: skip
}


def _transformer(kind: str, groups: int = G):  # noqa: ANN202
    spec, levels = TRANSFORMERS[kind]
    return build_component(
        "transformer", {**spec, "query_groups": groups}, num_queries=Q, num_levels=levels
    )


def _inputs(levels: int, b: int = 2) -> tuple[list, list, list]:
    g = torch.Generator().manual_seed(1)
    shapes = [(8, 10), (4, 5)][:levels]
    features = [torch.randn(b, D, h, w, generator=g) for h, w in shapes]
    positions = [torch.randn(b, D, h, w, generator=g) for h, w in shapes]
    masks = [torch.zeros(b, h, w, dtype=torch.bool) for h, w in shapes]
    for m in masks:
        m[1, m.shape[1] // 2 :] = True
    return features, masks, positions


def _refine(layer: int, hidden: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """A per-query box branch, as a head's: ``sigmoid(delta + logit(reference))``."""
    return (0.1 * hidden[..., :4].tanh() + inverse_sigmoid(reference)).sigmoid()


def _decode(transformer, kind: str) -> SetDecoding:  # noqa: ANN001
    features, masks, positions = _inputs(TRANSFORMERS[kind][1])
    refine = _refine if transformer.uses_refiner else None
    with torch.no_grad():
        return transformer(features, masks, positions, refine)


def _query_rows(transformer) -> list[torch.nn.Embedding]:  # noqa: ANN001
    names = ("query_pos", "query_content", "query_embed")
    return [e for n in names if (e := getattr(transformer, n, None)) is not None]


def test_group_mask_is_block_diagonal_and_none_for_one_group() -> None:
    assert query_group_mask(1, 5) is None
    mask = query_group_mask(3, 2)
    assert mask.shape == (6, 6) and mask.dtype == torch.bool
    expected = ~torch.block_diag(*[torch.ones(2, 2, dtype=torch.bool)] * 3)
    assert torch.equal(mask, expected)


@pytest.mark.parametrize("kind", list(TRANSFORMERS))
def test_group_zero_in_training_is_the_eval_decoding(kind: str) -> None:
    """With dropout 0 the train-mode decoding of group 0 is the eval decoding (the mask
    isolates the groups), and the other groups' query rows do not change it."""
    torch.manual_seed(0)
    transformer = _transformer(kind)
    train = _decode(transformer.train(), kind)
    assert train.groups == G and train.hidden.shape == (2, 2, G * Q, D)
    evaluated = _decode(transformer.eval(), kind)
    assert evaluated.groups == 1 and evaluated.hidden.shape == (2, 2, Q, D)
    torch.testing.assert_close(train.hidden[:, :, :Q], evaluated.hidden, atol=1e-5, rtol=1e-5)
    if train.references is not None:
        assert train.references.shape[:3] == (2, 2, G * Q)
        torch.testing.assert_close(train.references[:, :, :Q], evaluated.references)
    with torch.no_grad():
        for embedding in _query_rows(transformer):
            embedding.weight[Q:] = torch.randn_like(embedding.weight[Q:])
    changed = _decode(transformer.train(), kind)
    torch.testing.assert_close(changed.hidden[:, :, :Q], train.hidden[:, :, :Q], atol=0, rtol=0)
    assert not torch.allclose(changed.hidden[:, :, Q:], train.hidden[:, :, Q:])


@pytest.mark.parametrize("kind", list(TRANSFORMERS))
def test_each_group_decodes_as_a_one_group_transformer_with_its_rows(kind: str) -> None:
    torch.manual_seed(0)
    grouped = _transformer(kind).train()
    single = _transformer(kind, groups=1).train()
    state = grouped.state_dict()
    hidden = _decode(grouped, kind).hidden
    for g in range(G):
        rows = {k: v[g * Q : (g + 1) * Q] for k, v in state.items() if k.startswith("query_")}
        single.load_state_dict({**state, **rows})
        one = _decode(single, kind)
        assert one.groups == 1
        torch.testing.assert_close(hidden[:, :, g * Q : (g + 1) * Q], one.hidden, atol=1e-5,
                                   rtol=1e-5)  # fmt: skip


def test_one_group_keeps_the_parameter_names_and_shapes() -> None:
    for kind in TRANSFORMERS:
        torch.manual_seed(0)
        default = {k: v.shape for k, v in _transformer(kind, groups=1).state_dict().items()}
        spec, levels = TRANSFORMERS[kind]
        plain = build_component("transformer", spec, num_queries=Q, num_levels=levels)
        assert default == {k: v.shape for k, v in plain.state_dict().items()}
        grouped = _transformer(kind).state_dict()
        assert set(grouped) == set(default)
        for name, shape in default.items():
            rows = G * shape[0] if name.startswith("query_") else shape[0]
            assert grouped[name].shape == (rows, *shape[1:]), name


def test_registry_entries_with_query_groups_pass_the_kit() -> None:
    check_entry("transformer", "detr_transformer")
    check_entry("transformer", "deformable_detr_transformer")


def test_fold_and_repeat_put_image_b_group_g_in_row_b_times_g_plus_g() -> None:
    logits = torch.arange(2 * 2 * G * Q * 3.0).view(2, 2, G * Q, 3)
    boxes = torch.rand(2, 2, G * Q, 4)
    folded = fold_query_groups({"logits": logits, "boxes": boxes}, G)
    assert folded["logits"].shape == (2, 2 * G, Q, 3) and folded["boxes"].shape == (2, 2 * G, Q, 4)
    for b in range(2):
        for g in range(G):
            assert torch.equal(folded["logits"][:, b * G + g], logits[:, b, g * Q : (g + 1) * Q])
    labels = torch.tensor([[1, 2], [3, -1]])
    gt = GroundTruth(torch.rand(2, 2, 4), labels, labels > 0)
    repeated = repeat_per_group(gt, G)
    assert repeated.boxes.shape == (2 * G, 2, 4)
    assert torch.equal(repeated.labels, labels.repeat_interleave(G, 0))
    assert repeat_per_group(gt, 1) is gt


def test_check_decoding_takes_g_times_q_in_training_only() -> None:
    slot = Slot.of("transformer", {"type": "detr_transformer"}, "model.transformer")
    decoding = SetDecoding(torch.zeros(2, 1, G * Q, D), groups=G)
    assert check_decoding(slot, decoding, 2, 1, Q, training=True) is decoding
    with pytest.raises(Exception, match="groups is 3 in eval mode"):
        check_decoding(slot, decoding, 2, 1, Q)
    with pytest.raises(Exception, match=r"3 groups x 4 queries"):
        check_decoding(slot, SetDecoding(torch.zeros(2, 1, Q, D), groups=G), 2, 1, Q, True)


MODELS = {
    "detr": ("specs/detr_r18_shapes.yaml", ["model.transformer.query_init=learned"]),
    "deformable": ("specs/deformable_detr_r18_shapes.yaml", []),
    "box_refine": (
        "specs/deformable_detr_r18_shapes.yaml",
        ["model.transformer.with_box_refine=true", "model.head.shared=false"],
    ),
}
Q_M = 5  # the models' num_queries (TINY)
TINY = [
    "model.transformer.hidden_dim=32", "model.transformer.num_heads=4",
    "model.transformer.encoder_layers=1", "model.transformer.decoder_layers=2",
    "model.transformer.ffn_dim=64", "model.num_queries=5", "model.backbone.norm=frozen_bn",
]  # fmt: skip


def _model(kind: str, groups: int):  # noqa: ANN202
    spec, extra = MODELS[kind]
    overrides = [*TINY, *extra, f"model.transformer.query_groups={groups}"]
    return build_model(load_spec(spec, overrides=overrides))


@pytest.mark.parametrize("kind", list(MODELS))
def test_the_loss_of_g_groups_is_the_mean_of_one_group_losses(kind: str) -> None:
    """Each group matched and scored on its own (as a one-group model with that group's query
    rows), the terms averaged over the groups; eval mode is the one-group model with group 0."""
    pytest.importorskip("scipy")
    torch.manual_seed(0)
    grouped = _model(kind, G).train()
    single = _model(kind, 1).train()
    images, targets = tiny_batch()
    terms = grouped(images, targets)
    state = grouped.state_dict()
    stem = "transformer.query_"
    per_group = []
    for g in range(G):
        rows = {k: v[g * Q_M : (g + 1) * Q_M] for k, v in state.items() if k.startswith(stem)}
        single.load_state_dict({**state, **rows})
        per_group.append(single(images, targets))
    assert set(terms) == set(per_group[0])
    assert len({float(p["loss_giou"].detach()) for p in per_group}) == G, (
        "groups' losses should differ"
    )
    for name, value in terms.items():
        mean = torch.stack([p[name] for p in per_group]).mean()
        torch.testing.assert_close(value, mean, atol=1e-5, rtol=1e-4, msg=name)
    single.load_state_dict(
        {**state, **{k: v[:Q_M] for k, v in state.items() if k.startswith(stem)}}
    )
    grouped.eval()
    single.eval()
    with torch.no_grad():
        ours, one = grouped(images), single(images)
    for a, b in zip(ours, one):
        for key in ("boxes", "scores", "labels"):
            assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("spec", ["detr_r18_shapes", "deformable_detr_r18_shapes"])
def test_query_groups_still_sync_once_per_train_step(spec: str) -> None:
    pytest.importorskip("scipy")
    torch.manual_seed(0)
    small = ["model.transformer.hidden_dim=32", "model.transformer.ffn_dim=64",
             f"model.transformer.query_groups={G}"]  # fmt: skip
    model = build_model(load_spec(f"specs/{spec}.yaml", overrides=small))
    images, targets = tiny_batch()
    train_step(model, images, targets)
    with record_host_syncs() as train:
        train_step(model, images, targets)
    model.eval()
    with torch.no_grad(), record_host_syncs() as infer:
        model(images)
    sites = {(s.file, s.function) for s in train}
    assert sites - HOST_ONLY == {("hungarian.py", "_solve")}, sites
    copies = [s for s in train if s.function == "_solve" and s.op == "Tensor.cpu"]
    assert len(copies) == 1, train
    assert {(s.file, s.function) for s in infer} <= HOST_ONLY


def test_two_stage_refuses_query_groups_naming_the_key() -> None:
    overrides = ["model.transformer.two_stage=true", "model.transformer.with_box_refine=true",
                 "model.head.shared=false", "model.transformer.query_groups=2"]  # fmt: skip
    with pytest.raises(SpecError, match=r"model\.transformer.*query_groups: 2 needs learned"):
        build_model(load_spec("specs/deformable_detr_r18_shapes.yaml", overrides=overrides))
    with pytest.raises(SpecError, match="query_groups"):
        build_model(
            load_spec("specs/detr_r18_shapes.yaml", overrides=["model.transformer.query_groups=0"])
        )
