"""Checks of the component kinds whose contract needs no role: backbone, neck, anchor generator,
box coder, sampler, RoI extractor, optimizer, lr scheduler (``check_entry`` runs them)."""

from __future__ import annotations

from typing import Any

import torch

from ..interfaces import FeatureSpec
from .kit import conformance_check


@conformance_check("backbone")
def check_backbone(backbone: Any, size: tuple[int, int] | None = None, batch: int = 2) -> None:
    """Outputs match ``feature_info`` (names, order, channels, stride), dtype, no NaN.

    The input is ``size`` or the backbone's ``example_input_size`` attribute (for backbones
    that need a minimum size, e.g. SSD300's extra layers) or 96×128.
    """
    size = size or getattr(backbone, "example_input_size", (96, 128))
    info = backbone.feature_info
    assert info and all(isinstance(f, FeatureSpec) for f in info), "feature_info not declared"
    backbone.eval()
    x = torch.rand(batch, 3, *size)
    with torch.no_grad():
        out = backbone(x)
    _check_features(out, info, size, batch)


@conformance_check("neck")
def check_neck(neck: Any, size: tuple[int, int] = (128, 128), batch: int = 2) -> None:
    """Maps features described by ``in_feature_info`` to features matching ``feature_info``."""
    feats = {
        f.name: torch.rand(batch, f.channels, size[0] // f.stride, size[1] // f.stride)
        for f in neck.in_feature_info
    }
    neck.eval()
    with torch.no_grad():
        out = neck(feats)
    _check_features(out, neck.feature_info, size, batch)


def _check_features(
    out: dict[str, torch.Tensor], info: list[FeatureSpec], size: tuple[int, int], batch: int
) -> None:
    assert list(out) == [f.name for f in info], f"keys {list(out)} vs {[f.name for f in info]}"
    for f in info:
        t = out[f.name]
        assert t.dtype == torch.float32 and t.shape[:2] == (batch, f.channels), (
            f"{f.name}: shape {tuple(t.shape)}, expected ({batch}, {f.channels}, ...)"
        )
        for dim, length in zip(t.shape[2:], size):
            expected = length / f.stride
            assert abs(dim - expected) <= max(2.0, 0.1 * expected), (
                f"{f.name}: spatial {tuple(t.shape[2:])} does not fit stride {f.stride} of {size}"
            )
        assert torch.isfinite(t).all(), f"{f.name} has NaN/Inf"


@conformance_check("anchor_generator")
def check_anchor_generator(gen: Any) -> None:
    """Anchor count = sum h*w*n per level; float32 [A,4] xyxy with x2>x1, y2>y1."""
    sizes = [(8, 10), (4, 5), (2, 3)]
    n = gen.num_anchors_per_location()
    sizes = sizes[: len(n)] if len(n) <= len(sizes) else [(2, 2)] * len(n)
    anchors = gen((64, 80), sizes)
    per_level = gen((64, 80), sizes, per_level=True)
    expected = sum(h * w * k for (h, w), k in zip(sizes, n))
    assert anchors.shape == (expected, 4) and anchors.dtype == torch.float32, anchors.shape
    assert len(per_level) == len(n)
    assert torch.equal(torch.cat(list(per_level)), anchors)
    assert (anchors[:, 2:] > anchors[:, :2]).all(), "anchors must be xyxy with positive size"


@conformance_check("box_coder")
def check_box_coder(coder: Any) -> None:
    """decode(encode(b, a, s), a, s) == b, any batch shape, empty input; per-anchor strides
    ``s`` passed to every coder (those that need none ignore them); a coder that declares
    ``needs_strides`` refuses ``strides=None`` with a ``ValueError``.

    A coder whose parameterisation is bounded (YOLO: ``σ`` keeps a decoded centre within half a
    stride of its anchor's centre) provides ``conformance_sample(generator) -> (boxes, anchors,
    strides)`` inside that domain; elsewhere the round trip cannot hold.
    """
    g = torch.Generator().manual_seed(0)
    if hasattr(coder, "conformance_sample"):
        boxes, anchors, strides = coder.conformance_sample(g)
    else:
        xy = torch.rand(2, 30, 2, generator=g) * 100
        anchors = torch.cat([xy, xy + 5 + torch.rand(2, 30, 2, generator=g) * 50], -1)
        xy = torch.rand(2, 30, 2, generator=g) * 100
        boxes = torch.cat([xy, xy + 1 + torch.rand(2, 30, 2, generator=g) * 80], -1)
        strides = torch.tensor([8.0, 16.0, 32.0]).repeat(10).expand(2, 30)
    deltas = coder.encode(boxes, anchors, strides)
    assert deltas.shape == boxes.shape
    decoded = coder.decode(deltas, anchors, strides)
    torch.testing.assert_close(decoded, boxes, atol=1e-3, rtol=1e-4)
    empty = torch.zeros(0, 4)
    assert coder.encode(empty, empty, torch.zeros(0)).shape == (0, 4)
    assert coder.decode(empty, empty, torch.zeros(0)).shape == (0, 4)
    if getattr(coder, "needs_strides", False):
        for call in (coder.encode, coder.decode):
            try:
                call(boxes, anchors)
            except ValueError:
                continue
            raise AssertionError(f"{type(coder).__name__} needs strides but took strides=None")


@conformance_check("sampler")
def check_sampler(sampler: Any) -> None:
    """Bool [B,N] positive/negative masks, disjoint, only where labels allow."""
    matched = torch.tensor([[0, 1, -1, -1, -2, -1, 2, -1], [-1] * 8])
    pos, neg = sampler(matched)
    assert pos.shape == neg.shape == matched.shape and pos.dtype == torch.bool
    assert not (pos & neg).any()
    assert not pos[matched < 0].any() and not neg[matched != -1].any()


@conformance_check("optimizer")
def check_optimizer(optimizer: Any) -> None:
    """A ``torch.optim.Optimizer`` whose step moves parameters that have a gradient."""
    assert isinstance(optimizer, torch.optim.Optimizer), type(optimizer)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    for p in params:
        p.grad = None
    assert any(not torch.equal(p, b) for p, b in zip(params, before)), "step changed nothing"


@conformance_check("lr_scheduler")
def check_lr_scheduler(scheduler: Any) -> None:
    """An LRScheduler giving finite lrs >= 0 whose state survives a weights-only load
    (checkpoints are read with ``weights_only=True``)."""
    import io

    assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler), type(scheduler)
    for _ in range(3):
        scheduler.optimizer.step()
        scheduler.step()
    lrs = scheduler.get_last_lr()
    assert all(lr >= 0 and lr == lr and lr != float("inf") for lr in lrs), lrs
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    torch.load(buffer, weights_only=True)


@conformance_check("roi_extractor")
def check_roi_extractor(extractor: Any) -> None:
    """``[sum R_i, C, h, w]`` in box order, finite; no boxes give ``[0, C, h, w]``."""
    info = extractor.in_feature_info
    feats = {
        f.name: torch.rand(2, f.channels, max(64 // f.stride, 1), max(64 // f.stride, 1))
        for f in info
    }
    boxes = [torch.tensor([[4.0, 4, 40, 30], [0, 0, 64, 64]]), torch.tensor([[10.0, 8, 20, 50]])]
    out = extractor(feats, boxes, [(64, 64), (64, 64)])
    assert out.dim() == 4 and out.shape[0] == 3 and torch.isfinite(out).all(), out.shape
    empty = extractor(feats, [torch.zeros(0, 4), torch.zeros(0, 4)], [(64, 64), (64, 64)])
    assert empty.shape == (0, *out.shape[1:]), empty.shape
