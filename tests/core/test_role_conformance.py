"""The conformance kit refuses components that break their role's contract."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import torch

import anchorage.core.registry as registry_module
from anchorage.core import Head, Loss, Registry, RPNHead, RPNLoss
from anchorage.core.interfaces.roles import ROLE_INTERFACES
from anchorage.core.testing import ROLE_CHECKS, check_entry


@pytest.fixture
def registries(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Registry]]:
    """Empty loss and head registries standing in for the real ones during a test."""
    out = {"loss": Registry("loss", "test", Loss), "head": Registry("head", "test", Head)}
    for kind, registry in out.items():
        monkeypatch.setitem(registry_module.REGISTRIES, kind, registry)
    yield out


class _NotADict(RPNLoss):
    def __init__(self, cfg: Any) -> None:
        super().__init__()

    def forward(self, objectness, bbox_deltas, positive, negative, regression_targets):  # noqa: ANN001,ANN201
        return ("not a dict", float("nan"))


class _Detached(RPNLoss):
    def __init__(self, cfg: Any) -> None:
        super().__init__()

    def forward(self, objectness, bbox_deltas, positive, negative, regression_targets):  # noqa: ANN001,ANN201
        zero = objectness.detach().sum() * 0
        return {"loss_objectness": zero, "loss_rpn_box_reg": zero}


class _NaN(RPNLoss):
    def __init__(self, cfg: Any) -> None:
        super().__init__()

    def forward(self, objectness, bbox_deltas, positive, negative, regression_targets):  # noqa: ANN001,ANN201
        mean = objectness[positive].mean()  # NaN when no anchor is positive
        return {"loss_objectness": mean, "loss_rpn_box_reg": bbox_deltas.sum() * 0}


class _NoConfig(RPNLoss):
    def __init__(self) -> None:
        super().__init__()


class _WrongShapeHead(RPNHead):
    @attrs.frozen(kw_only=True)
    class Config:
        in_channels: int = 4
        num_anchors: int = 3

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(cfg.in_channels, cfg.num_anchors, 1)

    def forward(self, features: dict) -> dict:
        x = [self.conv(f).flatten(1) for f in features.values()]
        return {
            "objectness": torch.cat(x, 1),
            "bbox_deltas": torch.cat(x, 1),  # [B,A], not [B,A,4]
            "num_anchors_per_level": [t.shape[1] for t in x],
        }


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (_NotADict, "returns a non-empty dict"),
        (_Detached, "do not depend on the predictions"),
        (_NaN, "loss_objectness"),
    ],
)
def test_broken_losses_fail_the_kit(registries: dict, cls: type, message: str) -> None:
    registries["loss"].register("broken")(cls)
    with pytest.raises(AssertionError, match=message):
        check_entry("loss", "broken")


def test_component_without_config_gets_one_line(registries: dict) -> None:
    registries["loss"].register("no_config")(_NoConfig)
    with pytest.raises(AssertionError) as err:
        check_entry("loss", "no_config")
    message = str(err.value)
    assert "loss 'no_config' declares no Config" in message and "\n" not in message
    registries["loss"].register("given_params", examples=({"beta": 1.0},))(_NotADict)
    with pytest.raises(AssertionError, match=r"declares no Config .* sets \['beta'\]"):
        check_entry("loss", "given_params")


def test_head_with_wrong_output_shape_fails(registries: dict) -> None:
    registries["head"].register("wrong")(_WrongShapeHead)
    with pytest.raises(AssertionError, match="bbox_deltas"):
        check_entry("head", "wrong")


def test_every_role_interface_has_a_check() -> None:
    missing = [c.role for c in ROLE_INTERFACES if c.role not in ROLE_CHECKS]
    assert not missing, missing
