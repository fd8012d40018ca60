"""SeparableMaxPool2d: F.max_pool2d's values on the fast path, nn.MaxPool2d's everywhere else."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from anchorage.plugins.backbones.max_pool import (
    SeparableMaxPool2d,
    separable_max_pool2d,
    use_separable_max_pools,
)

# (kernel, stride, padding, ceil_mode): ResNet's stem, VGG's pools (SSD's ceil-mode pool3 and
# stride-1 pool5), GoogLeNet's ceil-mode pools, AlexNet's, rectangular and stride > kernel.
CONFIGS = [
    (3, 2, 1, False),
    (2, 2, 0, False),
    (2, 2, 0, True),
    (3, 1, 1, False),
    (3, 2, 0, True),
    (3, 2, 0, False),
    ((3, 2), (2, 1), (1, 0), False),
    ((1, 3), (2, 3), (0, 1), True),
    (1, 2, 0, False),
]


def _pair(v):
    return (v, v) if isinstance(v, int) else v


@pytest.mark.parametrize("k,s,p,ceil", CONFIGS)
@pytest.mark.parametrize("size", [(7, 9), (8, 8), (5, 12), (3, 3)])
def test_equals_f_max_pool2d(k, s, p, ceil, size) -> None:
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    ref = F.max_pool2d(x, k, s, p, ceil_mode=ceil)
    got = separable_max_pool2d(x, _pair(k), _pair(s), _pair(p), ceil)
    assert got.shape == ref.shape
    assert torch.equal(got, ref)


def test_module_takes_the_fast_path_with_the_same_values() -> None:
    x = torch.randn(2, 4, 11, 10).relu()  # ties at 0, as after a ReLU
    x[0, 1, 3, 4] = float("nan")
    pool = SeparableMaxPool2d(3, 2, 1)
    with torch.no_grad():
        got = pool(x)
    assert pool._separable(x)
    torch.testing.assert_close(got, F.max_pool2d(x, 3, 2, 1), rtol=0, atol=0, equal_nan=True)
    assert torch.equal(pool(x[1]), F.max_pool2d(x[1], 3, 2, 1))  # unbatched [C,H,W]


def test_inputs_needing_a_gradient_take_nn_max_pool2d_and_its_gradient() -> None:
    """The max pool's gradient goes to one argmax per window, ties included."""
    x = torch.zeros(1, 2, 6, 6)
    x[..., 2:, 2:] = 1.0  # a flat region: every window inside it is a tie
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    pool = SeparableMaxPool2d(3, 2, 1)
    assert not pool._separable(a)
    pool(a).sum().backward()
    F.max_pool2d(b, 3, 2, 1).sum().backward()
    assert torch.equal(a.grad, b.grad)


@pytest.mark.parametrize(
    "make",
    [
        lambda x: x.to(memory_format=torch.channels_last),  # native is fast there
        lambda x: x[..., ::2],  # not contiguous
        lambda x: (x * 10).to(torch.int64),  # no -inf padding for integers
    ],
)
def test_other_inputs_take_the_parent_forward(make) -> None:
    x = make(torch.randn(2, 3, 9, 8))
    pool = SeparableMaxPool2d(3, 2, 1)
    assert not pool._separable(x)
    assert torch.equal(pool(x), F.max_pool2d(x, 3, 2, 1))


def test_invalid_arguments_raise_pytorch_errors() -> None:
    with pytest.raises(RuntimeError, match="pad should be"):
        SeparableMaxPool2d(2, 2, padding=2)(torch.randn(1, 1, 8, 8))
    with pytest.raises(RuntimeError, match="too small"):
        SeparableMaxPool2d(5, 1)(torch.randn(1, 1, 3, 3))
    with_indices = SeparableMaxPool2d(2, return_indices=True)
    out, idx = with_indices(torch.randn(1, 1, 4, 4))
    assert idx.dtype == torch.int64


def test_export_keeps_one_max_pool_node() -> None:
    program = torch.export.export(SeparableMaxPool2d(3, 2, 1), (torch.randn(1, 3, 16, 16),))
    ops = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert any("max_pool2d" in op for op in ops)
    assert not any("maximum" in op for op in ops)


def test_use_separable_max_pools_swaps_plain_pools_only() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        nn.Sequential(nn.MaxPool2d(2)),
        nn.AdaptiveMaxPool2d(1),
    )
    state = net.state_dict()
    assert use_separable_max_pools(net) is net
    pools = [m for m in net.modules() if isinstance(m, nn.MaxPool2d)]
    assert [type(m) for m in pools] == [SeparableMaxPool2d] * 2
    assert (pools[0].kernel_size, pools[0].stride, pools[0].padding) == (3, 2, 1)
    assert pools[0].ceil_mode and isinstance(net[3], nn.AdaptiveMaxPool2d)
    assert net.state_dict().keys() == state.keys()
    assert isinstance(use_separable_max_pools(nn.MaxPool2d(2)), SeparableMaxPool2d)


def test_every_config_through_the_module() -> None:
    x = torch.randn(1, 2, 13, 10)
    for (k, s, p, ceil), grad in itertools.product(CONFIGS, (False, True)):
        pool = SeparableMaxPool2d(k, s, p, ceil_mode=ceil)
        with torch.set_grad_enabled(grad):
            assert torch.equal(pool(x), F.max_pool2d(x, k, s, p, ceil_mode=ceil))
