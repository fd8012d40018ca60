"""``deformable_detr_transformer``: registry entries, shapes, references, refinement, and the
numbers of transformers' ``DeformableDetrModel`` (with and without box refinement)."""

from __future__ import annotations

import attrs
import pytest
import torch
from torch import nn

from anchorage.core.build import build_component
from anchorage.core.errors import SpecError
from anchorage.core.host_sync import record_host_syncs
from anchorage.core.interfaces.set_prediction import SetDecoding
from anchorage.core.registry import TRANSFORMER_LAYERS
from anchorage.core.testing import check_entry
from anchorage.plugins.set_prediction.convert import transformer_state_from_transformers
from anchorage.plugins.set_prediction.deformable_transformer import (
    DeformableEncoderLayer,
    as_box_reference,
    encoder_reference_points,
    valid_ratios,
)

SMALL = {
    "hidden_dim": 16, "num_heads": 2, "encoder_layers": 1, "decoder_layers": 3, "ffn_dim": 32,
    "encoder_points": 2, "decoder_points": 2,
}  # fmt: skip


def _build(num_queries=6, num_levels=2, **params):
    spec = {"type": "deformable_detr_transformer", **SMALL, **params}
    return build_component("transformer", spec, num_queries=num_queries, num_levels=num_levels)


def _inputs(b=2, d=16, shapes=((8, 10), (4, 5))):
    """Random levels; image 1 covers the top-left part of each map (padding bottom/right)."""
    features = [torch.randn(b, d, h, w) for h, w in shapes]
    positions = [torch.randn(b, d, h, w) for h, w in shapes]
    masks = []
    for h, w in shapes:
        m = torch.zeros(b, h, w, dtype=torch.bool)
        m[1, (h * 3) // 4 :, :] = True
        m[1, :, (w * 3) // 5 :] = True
        masks.append(m)
    return features, masks, positions


def _box_refiner(mlps: nn.ModuleList):
    """A head's box branch: ``sigmoid(delta + inverse_sigmoid(reference))`` over the
    reference's own width (all four coordinates of a box, the centre of a point)."""

    def refine(layer, hidden, reference):
        delta = mlps[layer](hidden)
        logit = torch.logit(reference.clamp(0, 1), eps=1e-5)
        width = reference.shape[-1]
        return torch.cat([delta[..., :width] + logit, delta[..., width:]], -1).sigmoid()

    return refine


def _perturbed(module):
    """Off the init (whose offset and attention-weight matrices are zero)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return module


def _mlps(d=16, layers=3):
    return nn.ModuleList(
        nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 4)) for _ in range(layers)
    )


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("transformer", "deformable_detr_transformer"),
        ("transformer_layer", "deformable_encoder_layer"),
        ("transformer_layer", "deformable_decoder_layer"),
    ],
)
def test_conformance(kind, name):
    check_entry(kind, name)


def test_shapes_and_references_without_refinement():
    t = _build().eval()
    assert t.hidden_dim == 16 and not t.uses_refiner
    out = t(*_inputs())
    assert isinstance(out, SetDecoding)
    assert out.hidden.shape == (3, 2, 6, 16)
    assert out.references.shape == (3, 2, 6, 2)
    assert torch.isfinite(out.hidden).all()
    # one initial reference for every layer: sigmoid(Linear(query position))
    query_pos = t.query_embed.weight[:, :16]
    want = t.reference_points(query_pos).sigmoid().expand(2, -1, -1)
    for layer in range(3):
        torch.testing.assert_close(out.references[layer], want)


def test_refinement_feeds_each_layer_the_previous_box():
    t = _build(with_box_refine=True).eval()
    assert t.uses_refiner
    mlps = _mlps()
    calls = []
    base = _box_refiner(mlps)

    def refine(layer, hidden, reference):
        calls.append((layer, reference.shape))
        return base(layer, hidden, reference)

    out = t(*_inputs(), refine=refine)
    assert out.references.shape == (3, 2, 6, 4)
    assert calls == [(0, (2, 6, 4)), (1, (2, 6, 4))]  # the last layer's box refines nothing
    # layer 0: the initial point, (w, h) = 0.5; later layers: the previous layer's box
    initial = t.reference_points(t.query_embed.weight[:, :16]).sigmoid().expand(2, -1, -1)
    torch.testing.assert_close(out.references[0], as_box_reference(initial))
    for layer in (1, 2):
        want = base(layer - 1, out.hidden[layer - 1], out.references[layer - 1])
        torch.testing.assert_close(out.references[layer], want)
    # layer 0's point trains reference_points through the head (as the paper); the refined
    # boxes are detached
    out.references[1:].sum().backward()
    assert all(p.grad is None for p in mlps.parameters())
    assert t.reference_points.weight.grad.abs().sum() == 0


def test_a_point_padded_to_a_box_gives_the_papers_2d_rule_exactly():
    delta = torch.randn(2, 5, 4)
    point = torch.rand(2, 5, 2)
    paper = delta.clone()
    paper[..., :2] = delta[..., :2] + torch.logit(point, eps=1e-5)
    ours = delta + torch.logit(as_box_reference(point), eps=1e-5)
    assert torch.equal(ours.sigmoid(), paper.sigmoid())


def test_refinement_needs_the_refiner():
    t = _build(with_box_refine=True)
    with pytest.raises(ValueError, match="refine"):
        t(*_inputs())


def test_refined_reference_is_detached():
    t = _perturbed(_build(with_box_refine=True))
    mlps = _mlps()
    out = t(*_inputs(), refine=_box_refiner(mlps))
    # the last layer's hidden state sees layer 0's box only through a detached reference:
    # no gradient reaches the box branch that made it
    out.hidden[-1].sum().backward()
    assert all(p.grad is None for p in mlps.parameters())
    assert t.query_embed.weight.grad.abs().sum() > 0
    assert t.level_embed.grad.abs().sum() > 0
    assert t.encoder[0].self_attn.sampling_offsets.weight.grad.abs().sum() > 0


def test_rejects_wrong_levels_and_widths():
    t = _build()
    features, masks, positions = _inputs()
    with pytest.raises(ValueError, match="expected 2 levels"):
        t(features[:1], masks[:1], positions[:1])
    with pytest.raises(ValueError, match=r"features\[0\] must be"):
        t([f[:, :8] for f in features], masks, positions)


def test_padding_does_not_change_the_image():
    """An image alone, or padded bottom/right next to a larger one: the same decoder states and
    references (references are in 0..1 of the image, sampling offsets in pixels)."""
    t = _perturbed(_build(with_box_refine=True)).eval()
    refine = _box_refiner(_perturbed(_mlps()))
    shapes, padded = ((8, 10), (4, 5)), ((12, 16), (6, 8))
    features = [torch.randn(1, 16, h, w) for h, w in shapes]
    positions = [torch.randn(1, 16, h, w) for h, w in shapes]
    big_features = [torch.randn(2, 16, h, w) for h, w in padded]
    big_positions = [torch.randn(2, 16, h, w) for h, w in padded]
    big_masks = [torch.zeros(2, h, w, dtype=torch.bool) for h, w in padded]
    for level, (h, w) in enumerate(shapes):
        big_features[level][1, :, :h, :w] = features[level][0]
        big_positions[level][1, :, :h, :w] = positions[level][0]
        big_masks[level][1, h:, :] = True
        big_masks[level][1, :, w:] = True
    ratios = valid_ratios(big_masks)
    torch.testing.assert_close(ratios[1], torch.tensor([[10 / 16, 8 / 12], [5 / 8, 4 / 6]]))
    with torch.no_grad():
        alone = t(
            features,
            [torch.zeros(1, h, w, dtype=torch.bool) for h, w in shapes],
            positions,
            refine=refine,
        )
        batched = t(big_features, big_masks, big_positions, refine=refine)
    torch.testing.assert_close(batched.hidden[:, 1], alone.hidden[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(batched.references[:, 1], alone.references[:, 0], atol=1e-5, rtol=0)


def test_encoder_reference_points_are_pixel_centres_of_the_image():
    ratios = torch.tensor([[[1.0, 1.0], [1.0, 1.0]], [[0.5, 0.75], [0.5, 0.5]]])
    ref = encoder_reference_points([(4, 4), (2, 2)], ratios)
    assert ref.shape == (2, 20, 2, 2)
    torch.testing.assert_close(ref[0, 0, 0], torch.tensor([0.125, 0.125]))
    # image 1, level 0, pixel (0, 0): centre (0.5/2, 0.5/3) of its valid part, on each
    # level's padded map scaled by that level's ratio
    torch.testing.assert_close(ref[1, 0, 0], torch.tensor([0.25 * 0.5, 0.5 / 3 * 0.75]))
    torch.testing.assert_close(ref[1, 0, 1], torch.tensor([0.25 * 0.5, 0.5 / 3 * 0.5]))


def test_no_host_syncs():
    t = _build(with_box_refine=True)
    inputs = _inputs()
    refine = _box_refiner(_mlps())
    with record_host_syncs() as syncs:
        t(*inputs, refine=refine)
    assert syncs == []


def test_swapping_a_layer_is_one_spec_line():
    @TRANSFORMER_LAYERS.register("_test_counting_encoder_layer")
    class Counting(DeformableEncoderLayer):
        calls = 0

        def forward(self, *args, **kwargs):
            type(self).calls += 1
            return super().forward(*args, **kwargs)

    try:
        t = _build(encoder_layers=2, encoder_layer={"type": "_test_counting_encoder_layer"})
        assert all(isinstance(layer, Counting) for layer in t.encoder)
        t(*_inputs())
        assert Counting.calls == 2
    finally:
        TRANSFORMER_LAYERS.unregister("_test_counting_encoder_layer")


def test_layer_spec_may_not_set_injected_values():
    with pytest.raises(SpecError, match="set by its parent"):
        _build(encoder_layer={"type": "deformable_encoder_layer", "num_points": 3})


def test_config_checks_heads_divide_width():
    with pytest.raises(SpecError, match="divisible"):  # the spec path, from the config check
        _build(hidden_dim=16, num_heads=3)
    with pytest.raises(ValueError, match="divisible"):
        DeformableEncoderLayer.Config(
            hidden_dim=16, num_heads=3, num_levels=1, num_points=1, ffn_dim=8, dropout=0.0
        )
    assert attrs.fields_dict(DeformableEncoderLayer.Config)["dropout"].metadata


# --- transformers' DeformableDetrModel ---------------------------------------------------

HF = {
    "d_model": 32, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4,
    "decoder_attention_heads": 4, "encoder_n_points": 2, "decoder_n_points": 2,
    "num_queries": 10, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "num_feature_levels": 4,
}  # fmt: skip
OURS = {
    "hidden_dim": 32, "num_heads": 4, "encoder_layers": 2, "decoder_layers": 2, "ffn_dim": 64,
    "encoder_points": 2, "decoder_points": 2,
}  # fmt: skip


def _hf_detector(with_box_refine: bool):
    from transformers import DeformableDetrConfig, DeformableDetrForObjectDetection, ResNetConfig

    backbone = ResNetConfig(
        num_channels=3,
        embedding_size=8,
        hidden_sizes=[8, 16, 32, 32],
        depths=[1, 1, 1, 1],
        layer_type="basic",
        out_features=["stage2", "stage3", "stage4"],
    )
    config = DeformableDetrConfig(
        backbone_config=backbone,
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        with_box_refine=with_box_refine,
        **HF,
    )
    model = DeformableDetrForObjectDetection(config).eval()
    return _perturbed(model)


def _run_hf(model):
    """Two images of different sizes; returns the outputs and the projected levels, masks
    (True at padding) and position embeddings the model's own forward fed its encoder."""
    pixels = torch.randn(2, 3, 64, 80)
    pixel_mask = torch.ones(2, 64, 80, dtype=torch.long)
    pixel_mask[1, 40:, :] = 0
    pixel_mask[1, :, 48:] = 0
    sources, masks, positions = [], [], []
    hooks = [
        p.register_forward_hook(lambda _m, _i, out: sources.append(out))
        for p in model.model.input_proj
    ]

    def on_position(_m, _args, kwargs, out):
        masks.append(~kwargs["mask"])
        positions.append(out)

    hooks.append(
        model.model.position_embedding.register_forward_hook(on_position, with_kwargs=True)
    )
    try:
        with torch.no_grad():
            out = model(pixel_values=pixels, pixel_mask=pixel_mask)
    finally:
        for h in hooks:
            h.remove()
    assert len(sources) == len(masks) == 4
    assert any(m.any() for m in masks) and not all(m.all() for m in masks)
    return out, sources, masks, positions


def _ours_from(model, with_box_refine: bool):
    ours = _build(num_queries=10, num_levels=4, with_box_refine=with_box_refine, **OURS)
    ours.load_state_dict(transformer_state_from_transformers(model.state_dict()))
    return ours.eval()


def _max_diff(a, b):
    return (a - b).abs().max().item()


@pytest.mark.parametrize("with_box_refine", [False, True])
def test_matches_transformers_deformable_detr(with_box_refine, monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers.models.deformable_detr.modeling_deformable_detr import inverse_sigmoid

    model = _hf_detector(with_box_refine)
    out, sources, masks, positions = _run_hf(model)
    ours = _ours_from(model, with_box_refine)
    refine = None
    if with_box_refine:
        mlps = model.model.decoder.bbox_embed
        refine = _box_refiner(mlps)
    with torch.no_grad():
        got = ours(sources, masks, positions, refine=refine)

    assert got.hidden.shape == (2, 2, 10, 32)
    hidden = out.intermediate_hidden_states.transpose(0, 1)
    assert _max_diff(got.hidden, hidden) < 1e-5
    init = out.init_reference_points
    if not with_box_refine:
        assert got.references.shape == (2, 2, 10, 2)
        assert _max_diff(got.references, init.expand(2, -1, -1, -1)) < 1e-6
    else:
        assert got.references.shape == (2, 2, 10, 4)
        assert _max_diff(got.references[0, ..., :2], init) < 1e-6
        assert torch.equal(got.references[0, ..., 2:], torch.full_like(init, 0.5))
        refined = out.intermediate_reference_points.transpose(0, 1)
        assert _max_diff(got.references[1:], refined[:-1]) < 1e-5
    # a head's boxes on our references are transformers' head's (last layer: pred_boxes)
    head = model.bbox_embed[-1]
    delta = head(got.hidden[-1])
    width = got.references.shape[-1]
    logit = inverse_sigmoid(got.references[-1])
    boxes = torch.cat([delta[..., :width] + logit, delta[..., width:]], -1).sigmoid()
    assert _max_diff(boxes, out.pred_boxes) < 1e-5


def test_encoder_matches_transformers(monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from anchorage.plugins.set_prediction.deformable_transformer import flatten_levels

    model = _hf_detector(False)
    out, sources, masks, positions = _run_hf(model)
    ours = _ours_from(model, False)
    src, pos, padding, shapes = flatten_levels(sources, masks, positions, ours.level_embed)
    with torch.no_grad():
        memory = ours.encode(src, pos, padding, shapes, valid_ratios(masks))
    assert _max_diff(memory, out.encoder_last_hidden_state) < 1e-5


def test_state_conversion_names_missing_keys(monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    state = dict(_hf_detector(False).state_dict())
    converted = transformer_state_from_transformers(state)
    assert "decoder.1.self_attn.in_proj_weight" in converted
    assert "encoder.0.self_attn.sampling_offsets.bias" in converted
    del state["model.decoder.layers.1.self_attn.k_proj.bias"]
    del state["model.level_embed"]
    with pytest.raises(KeyError) as err:
        transformer_state_from_transformers(state)
    assert "model.decoder.layers.1.self_attn.k_proj.bias" in str(err.value)
    assert "model.level_embed" in str(err.value)
    with pytest.raises(KeyError, match="decoder.layers.0"):
        transformer_state_from_transformers({}, prefix="model.")
