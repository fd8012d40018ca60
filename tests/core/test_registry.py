from __future__ import annotations

import pytest
from support.toys import ToyMatcher, toys

from anchorage.core.errors import RegistryError
from anchorage.core.registry import MATCHERS, REGISTRIES, registry_for

KINDS = (
    "backbone neck anchor_generator matcher box_coder head roi_extractor sampler postprocessor "
    "loss positional_encoding transformer transformer_layer model dataset transform optimizer "
    "lr_scheduler metric"
).split()


def test_one_registry_per_kind() -> None:
    assert list(REGISTRIES) == KINDS
    assert registry_for("matcher") is MATCHERS
    with pytest.raises(RegistryError, match="unknown component kind 'matchr'"):
        registry_for("matchr")


def test_lookup_and_provider() -> None:
    with toys():
        entry = MATCHERS.get("toy_matcher")
        assert entry.factory is ToyMatcher
        assert entry.provider == "support"
        assert "toy_matcher" in MATCHERS
    assert "toy_matcher" not in MATCHERS


def test_unknown_name_suggests_close_names_with_providers() -> None:
    with toys():
        with pytest.raises(RegistryError) as exc:
            MATCHERS.get("toy_matchr")
    message = str(exc.value)
    assert "unknown matcher 'toy_matchr'" in message
    assert "did you mean 'toy_matcher' (from support)" in message


def test_duplicate_name_names_both_providers() -> None:
    with toys():

        class Other(ToyMatcher):
            pass

        with pytest.raises(RegistryError) as exc:
            MATCHERS.register("toy_matcher")(Other)
    message = str(exc.value)
    assert "duplicate matcher name 'toy_matcher'" in message
    assert "ToyMatcher" in message and "Other" in message and message.count("support") >= 2


def test_registering_the_same_object_twice_is_harmless() -> None:
    with toys():
        MATCHERS.register("toy_matcher")(ToyMatcher)
        assert MATCHERS.get("toy_matcher").factory is ToyMatcher


def test_names_are_never_import_paths() -> None:
    with pytest.raises(RegistryError, match="never an import path"):
        MATCHERS.register("os.system")(ToyMatcher)
    with pytest.raises(RegistryError, match="dotted import paths are never imported"):
        MATCHERS.get("os.path.join")


def test_contract_is_enforced() -> None:
    with pytest.raises(RegistryError, match="must subclass Matcher"):
        MATCHERS.register("not_a_matcher")(type("NotAMatcher", (), {}))
