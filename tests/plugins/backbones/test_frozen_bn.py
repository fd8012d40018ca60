"""FusedFrozenBatchNorm2d: torchvision's FrozenBatchNorm2d numbers and state-dict keys."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from anchorage.core import build_component
from anchorage.plugins.backbones.frozen_bn import FusedFrozenBatchNorm2d


def _pair(c: int = 16) -> tuple[FrozenBatchNorm2d, FusedFrozenBatchNorm2d]:
    g = torch.Generator().manual_seed(0)
    tv = FrozenBatchNorm2d(c, eps=1e-5)
    for name, buf in tv.named_buffers():
        lo = 0.1 if name == "running_var" else -1.0
        buf.copy_(torch.rand(c, generator=g) * 2 + lo)
    ours = FusedFrozenBatchNorm2d(c, eps=1e-5)
    ours.load_state_dict({**tv.state_dict(), "num_batches_tracked": torch.tensor(7)})
    return tv, ours


def test_outputs_equal_torchvision_frozen_batchnorm() -> None:
    tv, ours = _pair()
    x = torch.randn(3, 16, 9, 7, generator=torch.Generator().manual_seed(1)) * 4
    torch.testing.assert_close(ours(x), tv(x), rtol=0, atol=1e-6)
    xc = x.to(memory_format=torch.channels_last)
    torch.testing.assert_close(ours(xc), tv(x), rtol=0, atol=1e-6)


def test_backward_keeps_no_activation() -> None:
    """Like torchvision's module (and unlike F.batch_norm), autograd saves only [C] tensors."""
    _, ours = _pair()
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    saved: list[int] = []
    with torch.autograd.graph.saved_tensors_hooks(
        lambda t: saved.append(t.numel()) or t, lambda t: t
    ):
        ours(x).sum().backward()
    assert saved and max(saved) <= 16


def test_state_dict_keys_and_frozen_buffers_unchanged() -> None:
    tv, ours = _pair()
    assert list(ours.state_dict()) == list(tv.state_dict())
    assert isinstance(ours, FrozenBatchNorm2d) and not list(ours.parameters())
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    x = torch.randn(2, 16, 4, 4, requires_grad=True)
    ours.train()(x).sum().backward()  # train mode too: the statistics never move
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(torch.equal(before[k], v) for k, v in ours.state_dict().items())


def test_frozen_bn_backbones_use_the_fused_module() -> None:
    bb = build_component("backbone", {"type": "resnet18", "norm": "frozen_bn"})
    norms = [m for m in bb.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert norms and all(isinstance(m, FusedFrozenBatchNorm2d) for m in norms)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in bb.modules())
