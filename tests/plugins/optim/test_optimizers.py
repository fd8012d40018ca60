"""Registered optimizers: spec parameters reach torch.optim unchanged; bad values are errors."""

from __future__ import annotations

import pytest
import torch

from anchorage.core import SpecError, build_component
from anchorage.core.registry import OPTIMIZERS

CASES = {
    "sgd": (
        torch.optim.SGD,
        {"lr": 0.2, "momentum": 0.8, "nesterov": True, "weight_decay": 1e-3},
    ),
    "adam": (torch.optim.Adam, {"lr": 0.003, "betas": [0.8, 0.9], "weight_decay": 0.1}),
    "adamw": (torch.optim.AdamW, {"lr": 0.003, "eps": 1e-6, "amsgrad": True}),
    "rmsprop": (torch.optim.RMSprop, {"lr": 0.01, "alpha": 0.9, "momentum": 0.5}),
    "adagrad": (torch.optim.Adagrad, {"lr": 0.05, "lr_decay": 0.01}),
}


def test_every_required_optimizer_is_registered() -> None:
    assert set(CASES) <= set(OPTIMIZERS.names())


@pytest.mark.parametrize("name", sorted(CASES))
def test_builds_torch_optimizer_with_spec_values(name: str) -> None:
    cls, params = CASES[name]
    p = torch.nn.Parameter(torch.ones(3))
    opt = build_component("optimizer", {"type": name, **params}, params=[p])
    assert type(opt) is cls
    group = opt.param_groups[0]
    for key, value in params.items():
        assert group[key] == (tuple(value) if isinstance(value, list) else value), key


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_trajectory_as_torch(name: str) -> None:
    cls, params = CASES[name]
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    ours, ref = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    a = build_component("optimizer", {"type": name, **params}, params=[ours])
    b = cls([ref], **kwargs)
    for step in range(3):
        for p, opt in ((ours, a), (ref, b)):
            opt.zero_grad()
            (p * torch.arange(3.0) * (step + 1)).sum().backward()
            opt.step()
    assert torch.equal(ours, ref)


def test_adamw_defaults_to_decoupled_decay() -> None:
    opt = build_component(
        "optimizer", {"type": "adamw"}, params=[torch.nn.Parameter(torch.ones(1))]
    )
    assert opt.param_groups[0]["weight_decay"] == 0.01


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"type": "sgd", "lr": 0}, "lr"),
        ({"type": "sgd", "momentum": 1.5}, "momentum"),
        ({"type": "adam", "betas": [0.9, 1.0]}, "betas"),
        ({"type": "adam", "params": [1]}, "set by its parent"),
        ({"type": "sgd", "momentun": 0.9}, "unknown parameter 'momentun'"),
    ],
)
def test_bad_values_name_the_key(data: dict, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        build_component("optimizer", data, params=[torch.nn.Parameter(torch.ones(1))])


def test_nesterov_without_momentum_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="nesterov needs momentum"):
        build_component(
            "optimizer",
            {"type": "sgd", "momentum": 0.0, "nesterov": True},
            params=[torch.nn.Parameter(torch.ones(1))],
        )
