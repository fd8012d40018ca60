"""Style transfer losses: d2l.ai's formulas (content MSE, Gram / (c·h·w), total variation)."""

from __future__ import annotations

import pytest
import torch

from anchorage.core import build_component
from anchorage.plugins.losses.style import gram_matrix


def _d2l_gram(x: torch.Tensor) -> torch.Tensor:
    c, n = x.shape[1], x.numel() // x.shape[1]
    x = x.reshape(c, n)
    return x @ x.T / (c * n)


def test_gram_matrix_matches_d2l() -> None:
    x = torch.randn(1, 5, 6, 7)
    torch.testing.assert_close(gram_matrix(x)[0], _d2l_gram(x))
    assert gram_matrix(torch.randn(3, 4, 2, 2)).shape == (3, 4, 4)


def test_content_and_style_losses_with_layer_weights() -> None:
    g = torch.Generator().manual_seed(0)
    ref = {"a": torch.randn(1, 4, 6, 6, generator=g), "b": torch.randn(1, 8, 3, 3, generator=g)}
    syn = {k: torch.randn(v.shape, generator=g) for k, v in ref.items()}
    content = build_component(
        "loss", {"type": "content", "weight": 2.0, "layer_weights": {"b": 0.5}}
    )
    expected = 2.0 * (
        (syn["a"] - ref["a"]).square().mean() + 0.5 * (syn["b"] - ref["b"]).square().mean()
    )
    torch.testing.assert_close(content(syn, content.prepare(ref))["loss_content"], expected)
    assert content(ref, content.prepare(ref))["loss_content"].item() == 0.0

    style = build_component("loss", {"type": "gram_style", "weight": 1e4})
    targets = style.prepare(ref)
    assert targets["a"].shape == (1, 4, 4)
    expected = 1e4 * sum(
        (_d2l_gram(syn[k]) - _d2l_gram(ref[k])).square().mean() for k in ("a", "b")
    )
    torch.testing.assert_close(style(syn, targets)["loss_style"], expected)
    with pytest.raises(KeyError):
        style({"a": syn["a"]}, targets)


def test_total_variation() -> None:
    tv = build_component("loss", {"type": "total_variation", "weight": 10.0})
    assert tv(torch.full((1, 3, 5, 5), 0.3))["loss_tv"].item() == 0.0
    stripes = torch.zeros(1, 1, 4, 4)
    stripes[..., 1::2] = 1.0  # |dx| = 1 everywhere, |dy| = 0
    torch.testing.assert_close(tv(stripes)["loss_tv"], torch.tensor(10.0 * 0.5 * 1.0))
