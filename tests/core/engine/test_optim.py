"""Parameter groups (lr multipliers, frozen parts) and schedules with warm-up."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from anchorage.core import Spec, SpecError
from anchorage.core.engine.optim import build_optimizer, build_param_groups, build_scheduler


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(3, 4)
        self.head = nn.Linear(4, 2)


def train_cfg(**train: object):
    data = {"optimizer": {"type": "sgd", "lr": 0.1, "weight_decay": 1e-4}, **train}
    return Spec.from_dict({"train": data}).section("train")


def test_head_at_ten_times_lr_and_frozen_backbone() -> None:
    net = Net()
    cfg = train_cfg(
        param_groups=[
            {"pattern": r"^backbone\.", "frozen": True},
            {"pattern": r"^head\.weight$", "lr_mult": 10.0, "weight_decay_mult": 0.0},
        ]
    )
    opt = build_optimizer(net, cfg)
    assert not net.backbone.weight.requires_grad and not net.backbone.bias.requires_grad
    groups = {tuple(id(p) for p in g["params"]): g for g in opt.param_groups}
    head_w = groups[(id(net.head.weight),)]
    head_b = groups[(id(net.head.bias),)]
    assert head_w["lr"] == pytest.approx(1.0) and head_w["weight_decay"] == 0.0
    assert head_b["lr"] == pytest.approx(0.1) and head_b["weight_decay"] == pytest.approx(1e-4)
    in_optimizer = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(net.backbone.weight) not in in_optimizer
    before = net.backbone.weight.clone()
    net.head(net.backbone(torch.ones(1, 3))).sum().backward()
    opt.step()
    assert torch.equal(net.backbone.weight, before)


def test_first_matching_rule_wins_and_groups_keep_names() -> None:
    rules = train_cfg(
        param_groups=[{"pattern": "weight", "lr_mult": 2.0}, {"pattern": "head", "lr_mult": 5.0}]
    ).param_groups
    groups = build_param_groups(Net(), rules)
    by_mult = {g["lr_mult"]: g["names"] for g in groups}
    assert by_mult == {
        2.0: ["backbone.weight", "head.weight"],
        5.0: ["head.bias"],
        1.0: ["backbone.bias"],
    }


def test_pattern_matching_nothing_is_an_error() -> None:
    rules = train_cfg(param_groups=[{"pattern": "^neck", "lr_mult": 2.0}]).param_groups
    with pytest.raises(SpecError, match=r"\^neck.*match no parameter.*backbone.weight"):
        build_param_groups(Net(), rules)


def test_everything_frozen_is_an_error() -> None:
    rules = train_cfg(param_groups=[{"pattern": ".", "frozen": True}]).param_groups
    with pytest.raises(SpecError, match="every parameter is frozen"):
        build_param_groups(Net(), rules)


def lrs(cfg, steps: int, steps_per_epoch: int = 10) -> list[float]:
    opt = build_optimizer(Net(), cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch, steps)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_linear_warmup_then_multistep_in_epochs() -> None:
    cfg = train_cfg(
        warmup_iters=4,
        warmup_factor=0.2,
        lr_scheduler={"type": "multistep", "milestones": [1, 2], "gamma": 0.5},
    )
    got = lrs(cfg, 30)
    assert got[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    # milestones count epochs (10 iterations each) from the end of warm-up
    assert got[4:14] == pytest.approx([0.1] * 10)
    assert got[14:24] == pytest.approx([0.05] * 10)
    assert got[24:] == pytest.approx([0.025] * 6)


def test_cosine_spans_the_run_after_warmup() -> None:
    cfg = train_cfg(warmup_iters=2, lr_scheduler={"type": "cosine", "eta_min": 0.001})
    got = lrs(cfg, 12)
    main = got[2:]
    expected = [
        0.001 + (0.1 - 0.001) * (1 + torch.cos(torch.tensor(torch.pi * t / 10))) / 2
        for t in range(10)
    ]
    assert main == pytest.approx([float(e) for e in expected], rel=1e-5)


def test_no_scheduler_keeps_lr_constant() -> None:
    assert lrs(train_cfg(), 5) == pytest.approx([0.1] * 5)


def test_warmup_longer_than_run_is_clipped() -> None:
    got = lrs(train_cfg(warmup_iters=100, warmup_factor=0.5), 3)
    assert got[0] == pytest.approx(0.05) and all(a < b for a, b in zip(got, got[1:]))
