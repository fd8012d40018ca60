"""The conformance kit refuses components that break their role's contract."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import torch

import anchorage.core.registry as registry_module
from anchorage.core import Head, Loss, Registry, RPNHead, RPNLoss
from anchorage.core.interfaces import (
    Assignment,
    BoxLoss,
    DenseHead,
    DenseLoss,
    DensePostprocessor,
    DenseTargets,
    Matcher,
)
from anchorage.core.interfaces.roles import ROLE_INTERFACES
from anchorage.core.testing import ROLE_CHECKS, check_entry


@pytest.fixture
def registries(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Registry]]:
    """Empty loss, head and matcher registries standing in for the real ones during a test."""
    out = {
        "loss": Registry("loss", "test", Loss),
        "head": Registry("head", "test", Head),
        "matcher": Registry("matcher", "test", Matcher),
    }
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
    dense = (DenseHead, DenseLoss, BoxLoss, DensePostprocessor)
    missing = [c.role for c in (*ROLE_INTERFACES, *dense) if c.role not in ROLE_CHECKS]
    assert not missing, missing


# ------------------------------------------------------------------------- dense roles, matcher


class _DenseLossBase(DenseLoss):
    @attrs.frozen(kw_only=True)
    class Config:
        pass

    def __init__(self, cfg: Config) -> None:
        super().__init__()


class _DenseNotADict(_DenseLossBase):
    def forward(self, predictions: dict, targets: DenseTargets) -> Any:
        return ("not a dict", float("nan"))


class _DenseNaN(_DenseLossBase):
    def forward(self, predictions: dict, targets: DenseTargets) -> dict:
        positive = predictions["cls_logits"][..., 0][targets.positive]
        return {  # the mean over no positive (a batch without gt) is NaN
            "loss_classification": positive.mean(),
            "loss_bbox_regression": predictions["bbox_deltas"].sum() * 0,
        }


class _DenseDetached(_DenseLossBase):
    def forward(self, predictions: dict, targets: DenseTargets) -> dict:
        logits = predictions["cls_logits"].detach()
        return {"loss_classification": logits.logsumexp(-1).mean()}


class _DenseTrainsIgnored(_DenseLossBase):
    def forward(self, predictions: dict, targets: DenseTargets) -> dict:
        logits, labels = predictions["cls_logits"], targets.labels.clamp(min=0)
        box = (predictions["bbox_deltas"] - targets.box_targets).abs().sum(-1)
        return {
            "loss_classification": torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), labels.flatten()
            ),
            "loss_bbox_regression": torch.where(targets.positive, box, 0.0).sum(),
        }


class _BoxLossSummed(BoxLoss):
    @attrs.frozen(kw_only=True)
    class Config:
        pass

    def __init__(self, cfg: Config) -> None:
        super().__init__()

    def forward(self, deltas: torch.Tensor, targets: DenseTargets) -> torch.Tensor:
        return (deltas - targets.box_targets).abs().sum()  # a scalar, not [B,A]


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (_DenseNotADict, "returns a non-empty dict"),
        (_DenseNaN, "loss_classification"),
        (_DenseDetached, "do not depend on the predictions"),
        (_DenseTrainsIgnored, "ignored anchors"),
        (_BoxLossSummed, r"per-anchor \[B,A\]"),
    ],
)
def test_broken_dense_losses_fail_the_kit(registries: dict, cls: type, message: str) -> None:
    registries["loss"].register("broken")(cls)
    with pytest.raises(AssertionError, match=message):
        check_entry("loss", "broken")


def _flat(x: torch.Tensor) -> torch.Tensor:
    """``[B,K,H,W]`` → ``[B,H·W,K]``."""
    return x.flatten(2).transpose(1, 2)


class _OneAnchorHead(DenseHead):
    """Ignores ``num_anchors``: one prediction per location."""

    @attrs.frozen(kw_only=True)
    class Config:
        in_channels: tuple[int, ...] = (4, 8)
        num_anchors: tuple[int, ...] = (3, 3)
        num_classes: int = 2

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cls = torch.nn.ModuleList(
            torch.nn.Conv2d(c, cfg.num_classes + 1, 1) for c in cfg.in_channels
        )
        self.box = torch.nn.ModuleList(torch.nn.Conv2d(c, 4, 1) for c in cfg.in_channels)

    def forward(self, features: dict) -> dict:
        maps = list(features.values())
        return {
            "cls_logits": torch.cat([_flat(c(x)) for c, x in zip(self.cls, maps)], 1),
            "bbox_deltas": torch.cat([_flat(c(x)) for c, x in zip(self.box, maps)], 1),
        }


def test_dense_head_with_wrong_anchor_count_fails(registries: dict) -> None:
    registries["head"].register("one_anchor")(_OneAnchorHead)
    with pytest.raises(AssertionError, match=r"cls_logits: shape \(2, \d+, 3\)"):
        check_entry("head", "one_anchor")


class _MatcherBase(Matcher):
    @attrs.frozen(kw_only=True)
    class Config:
        pass

    def __init__(self, cfg: Config) -> None:
        pass


class _MatcherWrongShape(_MatcherBase):
    def __call__(self, anchors: Any, gt: Any, *, predictions: Any = None) -> Assignment:
        b, a = gt.valid.shape[0], anchors.boxes.shape[-2]
        return Assignment(torch.full((b, a - 1), -1, dtype=torch.int64))  # one anchor short


class _MatcherPerAnchorOnly(_MatcherBase):
    def __call__(self, anchors: Any, gt: Any, *, predictions: Any = None) -> Assignment:
        return Assignment(torch.full((anchors.boxes.shape[-2],), -1, dtype=torch.int64))  # [A]


class _MatcherTakesPadding(_MatcherBase):
    def __call__(self, anchors: Any, gt: Any, *, predictions: Any = None) -> Assignment:
        b, g = gt.valid.shape
        last = torch.full((b, anchors.boxes.shape[-2]), g - 1, dtype=torch.int64)
        return Assignment(last)  # the last gt row, padded or not


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (_MatcherWrongShape, r"Assignment.matched: shape \(3, \d+\), expected \(3, \d+\)"),
        (_MatcherPerAnchorOnly, r"Assignment.matched: shape \(\d+,\), expected"),
        (_MatcherTakesPadding, "padded gt rows must never match"),
    ],
)
def test_broken_matchers_fail_the_kit(registries: dict, cls: type, message: str) -> None:
    registries["matcher"].register("broken")(cls)
    with pytest.raises(AssertionError, match=message):
        check_entry("matcher", "broken")


EXAMPLE_PLUGIN = (
    Path(__file__).resolve().parents[1] / "data" / "example_plugin" / "anchorage_example"
)


def test_example_plugin_components_pass_the_kit(registries: dict) -> None:
    """The third-party matcher, box loss and dense loss of the example plugin conform."""
    for stem in ("matcher", "losses"):
        spec = importlib.util.spec_from_file_location(
            f"example_{stem}", EXAMPLE_PLUGIN / f"{stem}.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.anchorage_register(registries=registries)
    check_entry("matcher", "center_matcher")
    check_entry("loss", "example_giou")
    check_entry("loss", "example_focal")


# ------------------------------------------------------------- declared dense prediction layout


class _LayoutHead(DenseHead):
    """One conv per level for classes (C columns) and boxes; ``extra`` adds outputs."""

    prediction_keys = {"objectness": ()}
    extra: dict[str, tuple[int, ...]] = {"objectness": ()}

    @attrs.frozen(kw_only=True)
    class Config:
        in_channels: tuple[int, ...] = (4, 8)
        num_anchors: tuple[int, ...] = (1, 1)
        num_classes: int = 2

    @classmethod
    def background_column(cls, cfg: Any) -> bool:
        return False

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        outputs = cfg.num_classes + 4 + sum(s[0] if s else 1 for s in self.extra.values())
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(c, outputs, 1) for c in cfg.in_channels)
        self.num_classes = cfg.num_classes

    def forward(self, features: dict) -> dict:
        flat = torch.cat([_flat(c(x)) for c, x in zip(self.convs, features.values())], 1)
        c = self.num_classes
        out = {"cls_logits": flat[..., :c], "bbox_deltas": flat[..., c : c + 4]}
        start = c + 4
        for key, shape in self.extra.items():
            width = shape[0] if shape else 1
            value = flat[..., start : start + width]
            out[key] = value if shape else value[..., 0]
            start += width
        return out


class _HeadMissingDeclared(_LayoutHead):
    extra = {}


class _HeadUndeclaredOutput(_LayoutHead):
    extra = {"objectness": (), "quality": (1,)}


class _HeadWrongDeclaredShape(_LayoutHead):
    extra = {"objectness": (1,)}


def test_dense_head_that_keeps_its_declared_layout_passes(registries: dict) -> None:
    registries["head"].register("layout")(_LayoutHead)
    check_entry("head", "layout")


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (_HeadMissingDeclared, "missing output 'objectness'"),
        (_HeadUndeclaredOutput, r"outputs \['quality'\] are not declared"),
        (_HeadWrongDeclaredShape, r"objectness: shape \(2, \d+, 1\), declared"),
    ],
)
def test_dense_head_breaking_its_declared_layout_fails(
    registries: dict, cls: type, message: str
) -> None:
    registries["head"].register("broken")(cls)
    with pytest.raises(AssertionError, match=message):
        check_entry("head", "broken")


class _QualityLoss(_DenseLossBase):
    """Sigmoid classes over C columns plus a ``quality [B,A,1]`` logit on positives."""

    prediction_keys = {"quality": (1,)}

    @classmethod
    def background_column(cls, cfg: Any) -> bool:
        return False

    def forward(self, predictions: dict, targets: DenseTargets) -> dict:
        logits, labels = predictions["cls_logits"], targets.labels
        if logits.shape[-1] != targets.num_classes:
            raise ValueError(f"expected C = {targets.num_classes} columns, got {logits.shape}")
        onehot = torch.nn.functional.one_hot(labels.clamp(min=0), targets.num_classes + 1)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, onehot[..., 1:].to(logits), reduction="none"
        ).sum(-1)
        box = (predictions["bbox_deltas"] - targets.box_targets).abs().sum(-1)
        quality = predictions["quality"][..., 0].sigmoid()
        return {
            "loss_classification": torch.where(labels >= 0, bce, 0.0).sum(),
            "loss_bbox_regression": torch.where(targets.positive, box, 0.0).sum(),
            "loss_quality": torch.where(targets.positive, 1 - quality, 0.0).sum(),
        }


class _QualityLayoutUndeclared(_QualityLoss):
    """Needs C columns but declares nothing: the kit also tries C+1."""

    @classmethod
    def background_column(cls, cfg: Any) -> None:
        return None


class _QualityKeyUndeclared(_QualityLoss):
    """Reads ``quality`` without declaring it: the kit does not provide it."""

    prediction_keys = {}


class _QualityNotTrained(_QualityLoss):
    """Declares ``quality`` but no term reaches it."""

    def forward(self, predictions: dict, targets: DenseTargets) -> dict:
        out = super().forward(predictions, targets)
        del out["loss_quality"]
        return out


def test_dense_loss_gets_the_keys_and_logit_layout_it_declares(registries: dict) -> None:
    registries["loss"].register("quality")(_QualityLoss)
    check_entry("loss", "quality")


def test_dense_loss_is_checked_on_every_layout_it_accepts(registries: dict) -> None:
    """Declaring no logit layout means "C or C+1 columns": both are tried."""
    registries["loss"].register("undeclared")(_QualityLayoutUndeclared)
    with pytest.raises(ValueError, match="expected C = 3 columns"):
        check_entry("loss", "undeclared")


def test_dense_loss_gets_only_the_keys_it_declares(registries: dict) -> None:
    registries["loss"].register("undeclared")(_QualityKeyUndeclared)
    with pytest.raises(KeyError, match="quality"):
        check_entry("loss", "undeclared")


def test_declared_extra_key_must_get_a_gradient(registries: dict) -> None:
    registries["loss"].register("untrained")(_QualityNotTrained)
    with pytest.raises(AssertionError, match="no gradient reaches prediction input 2"):
        check_entry("loss", "untrained")
