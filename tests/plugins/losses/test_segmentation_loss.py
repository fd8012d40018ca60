"""cross_entropy: torch's cross-entropy with an ignore label, finite when all is ignored."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from anchorage.core import build_component


def test_matches_torch_and_ignores_pixels() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 6, generator=g)
    target = torch.randint(0, 4, (2, 5, 6), generator=g)
    target[0, :2] = 255
    loss = build_component("loss", {"type": "cross_entropy"})
    out = loss(logits, target)
    assert list(out) == ["loss_seg"]
    torch.testing.assert_close(out["loss_seg"], F.cross_entropy(logits, target, ignore_index=255))
    changed = logits.clone()
    changed[0, :, :2] = 100.0  # logits at ignored pixels do not matter
    torch.testing.assert_close(loss(changed, target)["loss_seg"], out["loss_seg"])


def test_all_ignored_is_zero_with_gradient_and_weight() -> None:
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = build_component("loss", {"type": "cross_entropy", "weight": 2.0, "name": "aux"})
    out = loss(logits, torch.full((1, 4, 4), 255))["loss_aux"]
    assert out.item() == 0.0
    out.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    target = torch.zeros(1, 4, 4, dtype=torch.int64)
    torch.testing.assert_close(
        loss(logits, target)["loss_aux"], 2.0 * F.cross_entropy(logits, target)
    )


def test_class_weights() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, 5, generator=g)
    target = torch.randint(0, 3, (2, 4, 5), generator=g)
    loss = build_component("loss", {"type": "cross_entropy", "class_weights": [0.2, 1.0, 3.0]})
    expected = F.cross_entropy(logits, target, weight=torch.tensor([0.2, 1.0, 3.0]))
    torch.testing.assert_close(loss(logits, target)["loss_seg"], expected)
