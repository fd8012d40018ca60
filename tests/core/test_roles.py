"""Typed slots: a slot that declares a role refuses components of the kind with another role."""

from __future__ import annotations

from typing import ClassVar

import pytest

import anchorage.core.registry as registry_module
from anchorage.core import Loss, Registry
from anchorage.core.config import validate_component
from anchorage.core.errors import SpecError


class _RoleA(Loss):
    role: ClassVar[str] = "role_a"


class _RoleB(Loss):
    role: ClassVar[str] = "role_b"


class _AOnly(_RoleA):
    pass


class _Both(_RoleA, _RoleB):
    pass


class _NoRole(Loss):
    pass


@pytest.fixture
def losses(monkeypatch: pytest.MonkeyPatch) -> Registry:
    registry = Registry("loss", "test losses", Loss)
    for name, cls in (("a_only", _AOnly), ("both", _Both), ("plain", _NoRole)):
        registry.register(name)(cls)
    monkeypatch.setitem(registry_module.REGISTRIES, "loss", registry)
    return registry


def test_entry_roles_follow_the_mro(losses: Registry) -> None:
    assert losses.get("a_only").roles == ("role_a",)
    assert set(losses.get("both").roles) == {"role_a", "role_b"}
    assert losses.get("plain").roles == ()


def test_slot_accepts_components_of_its_role(losses: Registry) -> None:
    node = validate_component("loss", {"type": "both"}, "model.loss", lambda p: "x.yaml", "role_b")
    assert node.type == "both"


def test_slot_refuses_another_role_naming_path_and_roles(losses: Registry) -> None:
    with pytest.raises(SpecError) as err:
        validate_component("loss", {"type": "a_only"}, "model.loss", lambda p: "x.yaml", "role_b")
    message = str(err.value)
    assert message.startswith("x.yaml: model.loss.type:")
    assert "takes a role_b" in message and "is role_a" in message and "both" in message
    with pytest.raises(SpecError, match="without a role"):
        validate_component("loss", {"type": "plain"}, "m.loss", lambda p: "x.yaml", "role_a")


@pytest.mark.parametrize(
    ("config", "data", "message"),
    [
        (
            "anchorage.plugins.models.style_transfer:StyleTransferConfig",
            {"tv_loss": {"type": "content"}},
            "st.tv_loss.type: this slot takes a image_prior_loss, but loss 'content' is style_loss",
        ),
        (
            "anchorage.plugins.models.style_transfer:StyleTransferConfig",
            {"style_loss": {"type": "total_variation"}},
            "st.style_loss.type: this slot takes a style_loss",
        ),
        (
            "anchorage.plugins.models.segmentation:SegmentationOptions",
            {"num_classes": 2, "loss": {"type": "rpn_loss"}},
            "st.loss.type: this slot takes a segmentation_loss, but loss 'rpn_loss' is rpn_loss",
        ),
        (
            "anchorage.plugins.models.rcnn_stages:MaskStageConfig",
            {"roi_extractor": {"type": "roi_align"}, "head": {"type": "rpn_head"}},
            "st.head.type: this slot takes a roi_mask_head, but head 'rpn_head' is rpn_head",
        ),
    ],
)
def test_real_slots_refuse_other_roles(config: str, data: dict, message: str) -> None:
    import importlib

    from anchorage.core.config import validate_section

    module, _, name = config.partition(":")
    cls = getattr(importlib.import_module(module), name)
    with pytest.raises(SpecError, match=message):
        validate_section(cls, data, "st", lambda p: "x.yaml")
