"""Multi-scale deformable attention: against a loop-per-sample reference, transformers' module
and its gradients."""

from __future__ import annotations

import math

import pytest
import torch

from anchorage.plugins.set_prediction.deformable_attention import (
    MultiScaleDeformableAttention,
    level_sizes,
    multi_scale_deformable_attention,
)

SHAPES = [(5, 7), (3, 4), (2, 2)]


def _bilinear(image: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Bilinear read of ``image [C,h,w]`` at ``(x, y)`` in 0..1 (edges of the map), zero
    outside: pixel ``(i, j)`` has its centre at ``((j + 0.5) / w, (i + 0.5) / h)``."""
    _, h, w = image.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(image.shape[0], dtype=image.dtype)
    for yi, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xi, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= xi < w and 0 <= yi < h:
                out += wx * wy * image[:, yi, xi]
    return out


def _naive(value, shapes, locations, weights):
    """Explicit loops over batch, query, head, level and point."""
    b, _, heads, dh = value.shape
    _, q, _, levels, points, _ = locations.shape
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    out = torch.zeros(b, q, heads, dh, dtype=value.dtype)
    for bi in range(b):
        for qi in range(q):
            for hi in range(heads):
                for li, (h, w) in enumerate(shapes):
                    image = value[bi, starts[li] : starts[li + 1], hi].T.reshape(dh, h, w)
                    for pi in range(points):
                        x, y = locations[bi, qi, hi, li, pi].tolist()
                        out[bi, qi, hi] += weights[bi, qi, hi, li, pi] * _bilinear(image, x, y)
    return out.reshape(b, q, heads * dh)


def _inputs(b=2, q=3, heads=2, dh=4, points=3, dtype=torch.float64):
    s = sum(h * w for h, w in SHAPES)
    value = torch.randn(b, s, heads, dh, dtype=dtype)
    # -0.3..1.3: a good share of the points fall outside the map (partly or wholly)
    locations = torch.rand(b, q, heads, len(SHAPES), points, 2, dtype=dtype) * 1.6 - 0.3
    weights = torch.rand(b, q, heads, len(SHAPES), points, dtype=dtype)
    return value, locations, weights


def test_matches_naive_loops_including_points_outside():
    value, locations, weights = _inputs()
    outside = ((locations < 0) | (locations > 1)).any(-1)
    assert outside.any() and (~outside).any()
    got = multi_scale_deformable_attention(value, SHAPES, locations, weights)
    want = _naive(value, SHAPES, locations, weights)
    assert got.shape == (2, 3, 2 * 4)
    torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)


def test_points_far_outside_read_zero():
    value, locations, weights = _inputs()
    locations = torch.full_like(locations, 1.5)
    got = multi_scale_deformable_attention(value, SHAPES, locations, weights)
    assert torch.equal(got, torch.zeros_like(got))


def test_rejects_shapes_that_do_not_fit_the_value():
    value, locations, weights = _inputs()
    with pytest.raises(ValueError, match="spatial_shapes"):
        multi_scale_deformable_attention(value, SHAPES[:2], locations[:, :, :, :2], weights)


def test_level_sizes_are_width_then_height():
    sizes = level_sizes(SHAPES, torch.zeros(1))
    assert sizes.tolist() == [[7.0, 5.0], [4.0, 3.0], [2.0, 2.0]]


def test_init_is_the_papers_directional_grid():
    attn = MultiScaleDeformableAttention(16, 4, 2, 3)
    grid = attn.sampling_offsets.bias.detach().view(4, 2, 3, 2)
    unit = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    for p in range(3):
        torch.testing.assert_close(grid[:, 0, p], unit * (p + 1), atol=1e-6, rtol=0)
        torch.testing.assert_close(grid[:, 1, p], unit * (p + 1), atol=1e-6, rtol=0)
    assert torch.count_nonzero(attn.sampling_offsets.weight) == 0
    assert torch.count_nonzero(attn.attention_weights.weight) == 0
    assert torch.count_nonzero(attn.attention_weights.bias) == 0


def _module_inputs(b=2, q=5, d=16, coords=2):
    s = sum(h * w for h, w in SHAPES)
    query = torch.randn(b, q, d)
    value = torch.randn(b, s, d)
    if coords == 2:
        reference = torch.rand(b, q, len(SHAPES), 2)
    else:
        reference = torch.cat(
            [torch.rand(b, q, len(SHAPES), 2), torch.rand(b, q, len(SHAPES), 2) * 0.5], -1
        )
    padding = torch.zeros(b, s, dtype=torch.bool)
    padding[1, -7:] = True
    return query, reference, value, padding


def _perturbed(module: torch.nn.Module) -> torch.nn.Module:
    """Random non-zero offsets and attention weights (the init zeroes their matrices)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return module


@pytest.mark.parametrize("coords", [2, 4])
def test_matches_transformers_module(coords, monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import DeformableDetrConfig
    from transformers.models.deformable_detr.modeling_deformable_detr import (
        DeformableDetrMultiscaleDeformableAttention,
    )

    config = DeformableDetrConfig(d_model=16, num_feature_levels=len(SHAPES))
    theirs = DeformableDetrMultiscaleDeformableAttention(config, num_heads=4, n_points=3).eval()
    ours = _perturbed(MultiScaleDeformableAttention(16, 4, len(SHAPES), 3)).eval()
    theirs.load_state_dict(ours.state_dict())
    query, reference, value, padding = _module_inputs(coords=coords)
    shapes = torch.tensor(SHAPES)
    starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    with torch.no_grad():
        want, _ = theirs(
            hidden_states=query,
            attention_mask=~padding,
            encoder_hidden_states=value,
            reference_points=reference,
            spatial_shapes=shapes,
            spatial_shapes_list=SHAPES,
            level_start_index=starts,
        )
        got = ours(query, reference, value, SHAPES, padding)
    assert got.shape == (2, 5, 16)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_padding_is_never_read():
    attn = _perturbed(MultiScaleDeformableAttention(16, 4, len(SHAPES), 3))
    query, reference, value, padding = _module_inputs()
    before = attn(query, reference, value, SHAPES, padding)
    value = value.masked_fill(padding[..., None], 1e3)
    torch.testing.assert_close(attn(query, reference, value, SHAPES, padding), before)


def test_gradients_reach_value_and_offsets():
    attn = _perturbed(MultiScaleDeformableAttention(16, 4, len(SHAPES), 3))
    query, reference, value, padding = _module_inputs()
    value.requires_grad_(True)
    attn(query, reference, value, SHAPES, padding).square().sum().backward()
    assert value.grad is not None and value.grad.abs().sum() > 0
    assert torch.isfinite(value.grad).all()
    for p in (attn.sampling_offsets.weight, attn.sampling_offsets.bias):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert attn.attention_weights.weight.grad.abs().sum() > 0


def test_rejects_references_of_other_widths():
    attn = MultiScaleDeformableAttention(16, 4, len(SHAPES), 3)
    query, reference, value, _ = _module_inputs()
    with pytest.raises(ValueError, match="end in 2"):
        attn(query, reference[..., :1], value, SHAPES)
