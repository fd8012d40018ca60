"""A plugin's wrong return value at run time names the slot, the component and its provider."""

from __future__ import annotations

import re
import runpy
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import torch

from anchorage.core import build_component
from anchorage.core.cli import run_tool
from anchorage.core.errors import PluginError
from anchorage.core.interfaces import Assignment, DenseLoss, Matcher
from anchorage.core.registry import LOSSES, MATCHERS, current_provider
from anchorage.plugins.models.single_shot import _TINY

ROOT = Path(__file__).resolve().parents[2]


class BadLoss(DenseLoss):
    """Returns a per-anchor tensor, or a term without the ``loss_`` prefix."""

    @attrs.frozen(kw_only=True)
    class Config:
        mode: str = "per_anchor"

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.mode = cfg.mode

    def forward(self, predictions, targets):  # noqa: ANN001, ANN201
        per_anchor = predictions["cls_logits"].sum(-1)
        if self.mode == "per_anchor":
            return {"loss_qfl": per_anchor}
        return {"qfl": per_anchor.sum()}


class BadMatcher(Matcher):
    """Returns ``[B,A-1]``, an index past G, or float indices."""

    @attrs.frozen(kw_only=True)
    class Config:
        mode: str = "short"

    def __init__(self, cfg: Config) -> None:
        self.mode = cfg.mode

    def __call__(self, anchors, gt, *, predictions=None):  # noqa: ANN001, ANN204
        b, a = gt.valid.shape[0], anchors.boxes.shape[-2]
        matched = torch.full((b, a), -1, dtype=torch.int64)
        if self.mode == "short":
            return Assignment(matched[:, 1:])
        if self.mode == "too_big":
            matched[0, 0] = gt.valid.shape[1]
            return Assignment(matched)
        return Assignment(matched.float())


@pytest.fixture
def bad_components() -> Iterator[None]:
    token = current_provider.set("myplug")
    try:
        LOSSES.register("bad_loss")(BadLoss)
        MATCHERS.register("bad_matcher")(BadMatcher)
    finally:
        current_provider.reset(token)
    yield
    LOSSES.unregister("bad_loss")
    MATCHERS.unregister("bad_matcher")


def _train_step(**slots: dict) -> None:
    model = build_component("model", {"type": "single_shot", **_TINY, **slots})
    model.train()
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 64)]
    box = {"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1])}
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    model(images, [box, empty])


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        (
            "per_anchor",
            r"model\.loss \(bad_loss from myplug\): loss_qfl is \[2,\d+\], expected a scalar",
        ),
        ("no_prefix", r"model\.loss \(bad_loss from myplug\): returned a term 'qfl'"),
    ],
)
def test_a_bad_loss_is_named(bad_components: None, mode: str, message: str) -> None:
    with pytest.raises(PluginError, match=message):
        _train_step(loss={"type": "bad_loss", "mode": mode})


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("short", r"Assignment\.matched is \[2,\d+\], expected \[2,\d+\] \(B, A\)"),
        ("too_big", r"Assignment\.matched indexes past the 1 gt boxes \(index 1 is out of"),
        ("float", r"Assignment\.matched has dtype torch\.float32"),
    ],
)
def test_a_bad_matcher_is_named(bad_components: None, mode: str, message: str) -> None:
    with pytest.raises(
        PluginError, match=r"model\.matcher \(bad_matcher from myplug\): " + message
    ):
        _train_step(matcher={"type": "bad_matcher", "mode": mode})


@pytest.mark.slow
def test_the_train_tool_names_a_bad_plugin_in_one_line(
    bad_components: None, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cache = tmp_path / "cache"
    overrides = [
        f"data.train.dataset.root={cache}", "data.train.dataset.num_images=2",
        f"data.val.dataset.root={cache}", "data.val.dataset.num_images=2",
        "train.max_iters=1", "model.loss={type: bad_loss}",
    ]  # fmt: skip
    argv = ["specs/tiny_ssd_shapes.yaml", "--work-dir", str(tmp_path / "w"), "--no-progress"]
    main = runpy.run_path(str(ROOT / "tools" / "train.py"))["main"]
    assert run_tool(main, [*argv, *[a for o in overrides for a in ("--set", o)]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert re.search(r"model\.loss \(bad_loss from myplug\): loss_qfl is \[2,\d+\]", err[0])
