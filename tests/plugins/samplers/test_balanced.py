"""balanced_sampler: torchvision's counts, vectorized over the batch, deterministic mode."""

from __future__ import annotations

import torch

from anchorage.core.build import build_component


def _matched() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    m = torch.randint(-2, 5, (3, 400), generator=g)
    m[1] = -1  # no positives
    m[2, :390] = 2  # few negatives
    return m


def test_counts_follow_torchvision_rule() -> None:
    s = build_component(
        "sampler",
        {"type": "balanced_sampler", "batch_size_per_image": 64, "positive_fraction": 0.25},
    )
    m = _matched()
    pos, neg = s(m)
    assert not (pos & neg).any()
    assert (m[pos] >= 0).all() and (m[neg] == -1).all()
    for b in range(3):
        n_pos = min(int((m[b] >= 0).sum()), 16)
        n_neg = min(int((m[b] == -1).sum()), 64 - n_pos)
        assert (int(pos[b].sum()), int(neg[b].sum())) == (n_pos, n_neg)


def test_random_mode_uses_torch_rng() -> None:
    s = build_component("sampler", {"type": "balanced_sampler", "batch_size_per_image": 32})
    m = _matched()
    torch.manual_seed(1)
    a = s(m)
    torch.manual_seed(1)
    b = s(m)
    c = s(m)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(b[1], c[1])


def test_random_mode_is_uniform() -> None:
    s = build_component(
        "sampler", {"type": "balanced_sampler", "batch_size_per_image": 2, "positive_fraction": 0.5}
    )
    m = torch.full((2000, 10), -1)
    m[:, :4] = 0
    torch.manual_seed(0)
    pos, neg = s(m)
    freq = pos[:, :4].float().mean(0)  # each of 4 positives chosen with p = 1/4
    assert ((freq - 0.25).abs() < 0.05).all(), freq
    assert (neg.sum(1) == 1).all()


def test_first_mode_picks_first_in_order() -> None:
    s = build_component(
        "sampler",
        {
            "type": "balanced_sampler",
            "batch_size_per_image": 4,
            "positive_fraction": 0.5,
            "order": "first",
        },
    )
    m = torch.tensor([[-1, 3, -2, 0, -1, 1, 2, -1, -1]])
    pos, neg = s(m)
    assert pos[0].nonzero().flatten().tolist() == [1, 3]
    assert neg[0].nonzero().flatten().tolist() == [0, 4]
    empty = s(torch.zeros(2, 0, dtype=torch.int64))
    assert empty[0].shape == (2, 0)
