"""Conformance checks of the classification and localization roles
(``core/interfaces/classification.py``); whole classifier models are checked by ``check_model``.

Heads get a feature map ``[B,D,h,w]`` sized from their config (injected ``in_channels``,
``num_classes``), at two spatial sizes (pooling makes the output size-independent) and for
B = 1; losses get labels 1..C with an image that does not count, and nothing that counts.
"""

from __future__ import annotations

from typing import Any

import torch

from .kit import register_checks
from .roles import check_loss_terms

_C = 3


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def check_classification_head(head: Any, cfg: Any) -> None:
    """``{"logits": [B,C]}`` for maps of two sizes (and 1x1), finite; B = 1 works."""
    head.eval()
    for b, (h, w) in ((2, (5, 7)), (2, (1, 1)), (1, (3, 3))):
        x = torch.randn(b, cfg.in_channels, h, w, generator=_gen())
        with torch.no_grad():
            out = head(x)
        assert isinstance(out, dict) and "logits" in out, f"returns {type(out)} without logits"
        assert out["logits"].shape == (b, cfg.num_classes), tuple(out["logits"].shape)
        assert torch.isfinite(out["logits"]).all()


def check_box_regression_head(head: Any, cfg: Any) -> None:
    """``{"boxes": [B,4]}`` cxcywh within 0..1, for maps of two sizes."""
    head.eval()
    for b, (h, w) in ((2, (5, 7)), (1, (1, 1))):
        x = torch.randn(b, cfg.in_channels, h, w, generator=_gen())
        with torch.no_grad():
            boxes = head(x)["boxes"]
        assert boxes.shape == (b, 4), tuple(boxes.shape)
        assert ((boxes >= 0) & (boxes <= 1)).all(), "boxes are cxcywh in 0..1"


def check_classification_loss(loss: Any, cfg: Any) -> None:
    """Labels 1..C with one image not counted (0); no image counted; B = 0."""
    logits = torch.randn(4, _C, generator=_gen()).requires_grad_(True)
    check_loss_terms(loss(logits, torch.tensor([1, 2, 3, 0])), (logits,))
    check_loss_terms(loss(logits, torch.zeros(4, dtype=torch.int64)))
    empty = torch.zeros(0, _C, requires_grad=True)
    check_loss_terms(loss(empty, torch.zeros(0, dtype=torch.int64)))


def check_localization_loss(loss: Any, cfg: Any) -> None:
    """Boxes with one image invalid; no valid image; a perfect prediction costs (about) 0."""
    g = _gen()
    centre = 0.3 + 0.4 * torch.rand(3, 2, generator=g)
    size = 0.1 + 0.3 * torch.rand(3, 2, generator=g)
    boxes = torch.cat([centre, size], -1).requires_grad_(True)
    target = torch.cat([centre - size / 2, centre + size / 2], -1).flip(0)  # [B,4] xyxy
    valid = torch.tensor([True, True, False])
    check_loss_terms(loss(boxes, target, valid), (boxes,))
    check_loss_terms(loss(boxes, target, torch.zeros(3, dtype=torch.bool)))
    exact = torch.cat([centre - size / 2, centre + size / 2], -1)
    perfect = loss(boxes.detach(), exact, torch.ones(3, dtype=torch.bool))
    assert all(float(v) < 1e-4 for v in perfect.values()), perfect


register_checks(
    roles={
        "classification_head": check_classification_head,
        "box_regression_head": check_box_regression_head,
        "classification_loss": check_classification_loss,
        "localization_loss": check_localization_loss,
    }
)
