"""The cheap model-state check: any NaN/Inf raises the flag; huge finite values are not named."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from anchorage.core.engine.health import describe_nonfinite, nonfinite_flag, nonfinite_names


def net(dtype: torch.dtype = torch.float32) -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_any_nonfinite_value_raises_the_flag(dtype: torch.dtype, bad: float) -> None:
    model = net(dtype)
    assert float(nonfinite_flag(model)) == 0.0 and nonfinite_names(model) == []
    model[1].running_var[2] = bad
    assert float(nonfinite_flag(model)) == 1.0
    assert nonfinite_names(model) == ["1.running_var"]


def test_infinities_of_both_signs_do_not_cancel() -> None:
    model = net()
    with torch.no_grad():
        model[0].weight[0, 0] = float("inf")
        model[0].weight[0, 1] = float("-inf")
    assert float(nonfinite_flag(model)) == 1.0


def test_huge_finite_values_may_raise_the_flag_but_are_not_named() -> None:
    model = net()
    with torch.no_grad():
        model[0].weight.fill_(3e38)
    assert nonfinite_names(model) == []  # the exact check the trainer confirms with


def test_description_lists_the_first_tensors() -> None:
    model = nn.Sequential(*[nn.Linear(1, 1) for _ in range(4)])
    with torch.no_grad():
        for layer in model:
            layer.bias.fill_(float("nan"))
    text = describe_nonfinite(model, shown=2)
    assert text == "4 tensors (0.bias, 1.bias, ... and 2 more)"
    assert nonfinite_flag(nn.Sequential()).item() == 0.0
