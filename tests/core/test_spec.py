"""Spec loading: inheritance, overrides, provenance, and every refused input."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.toys import ToyHeadlessModel, toys

from anchorage.core import Spec, build_model, load_spec
from anchorage.core.data import class_names_from_spec
from anchorage.core.errors import SpecError


@pytest.fixture(autouse=True)
def _toys():
    with toys():
        yield


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


BASE = """
model:
  type: toy_model
  num_classes: 3
  matcher: {type: toy_matcher, threshold: 0.4}
"""


def test_load_build_and_provenance(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml", "_base_: base.yaml\nmodel:\n  sizes: [4, 8]\n")
    spec = load_spec(child, ["model.matcher.threshold=0.7"])
    model = build_model(spec)
    assert isinstance(model, ToyHeadlessModel)
    assert model.cfg.sizes == (4, 8) and model.cfg.num_classes == 3
    assert model.matcher.cfg.threshold == 0.7
    assert spec.where("model.num_classes").endswith("base.yaml")
    assert spec.where("model.sizes").endswith("child.yaml")
    assert spec.where("model.matcher.threshold") == "--set model.matcher.threshold=0.7"


def test_base_list_merges_in_order(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", BASE)
    write(tmp_path, "b.yaml", "model:\n  num_classes: 5\n")
    spec = load_spec(write(tmp_path, "c.yaml", "_base_: [a.yaml, b.yaml]\n"))
    assert spec.model.params["num_classes"] == 5


def test_changing_type_replaces_the_component(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "c.yaml", "_base_: base.yaml\nmodel:\n  extra: {type: toy_matcher}\n")
    spec = load_spec(child, ["model.matcher.type=toy_matcher"])
    assert spec.model.params["matcher"].params == {"threshold": 0.4}
    spec.data["model"]["matcher"]["type"] = "other"
    # a different type in an override drops the old type's parameters
    with pytest.raises(SpecError, match="unknown matcher 'other'"):
        Spec(spec.data, spec.sources, spec.path)


def test_round_trip_through_plain_data(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, "s.yaml", BASE))
    again = Spec.from_dict(spec.to_dict(), "checkpoint.pt")
    assert again.model == spec.model


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.num_classes=three", "model.num_classes: expected an integer, got 'three'"),
        ("model.num_classes=0", "model.num_classes: 'num_classes' must be > 0: 0"),
        ("model.matcher.threshold=1.5", "model.matcher.threshold: 'threshold' must be <= 1.0"),
        ("model.matcher.mode=medium", "model.matcher.mode: 'mode' must be in ('fast', 'slow')"),
        ("model.sizes=[1, x]", "model.sizes[1]: expected an integer, got 'x'"),
        ("model.num_clases=3", "unknown parameter 'num_clases' of model 'toy_model'"),
        ("model.matcher.nope=1", "accepted parameters: mode, threshold"),
        ("model.head.x=1", "model.head does not exist (under model: type, num_classes, matcher)"),
        ("train.epochs=1", "train does not exist (under the top level: model)"),
        ("model.width=3", "'width' of model 'toy_model' is set by its parent component"),
        ("model.matcher.type=toy_matchr", "did you mean 'toy_matcher' (from support)"),
        ("model", "expected KEY.PATH=VALUE"),
        ("model.num_classes=[1", "the value is not valid YAML"),
    ],
)
def test_bad_override_names_key_path(tmp_path: Path, override: str, expected: str) -> None:
    path = write(tmp_path, "s.yaml", BASE)
    with pytest.raises(SpecError) as exc:
        load_spec(path, [override])
    assert expected in str(exc.value)
    assert f"--set {override}" in str(exc.value)


def test_missing_parameter_names_file_and_path(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", "model:\n  type: toy_model\n  matcher: {type: toy_matcher}\n")
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    assert str(path) in str(exc.value)
    assert "model.num_classes: missing required parameter 'num_classes'" in str(exc.value)


def test_unknown_component_lists_close_names(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", BASE.replace("type: toy_matcher", "type: toy_mather"))
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    message = str(exc.value)
    assert str(path) in message and "model.matcher.type: unknown matcher 'toy_mather'" in message
    assert "did you mean 'toy_matcher' (from support)" in message


def test_dotted_import_path_is_refused_not_imported(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", BASE.replace("type: toy_matcher", "type: os.system"))
    with pytest.raises(SpecError, match="dotted import paths are never imported"):
        load_spec(path)


def test_malformed_yaml_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "model:\n  type: toy_model\n  num_classes: [1, 2\n")
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    assert f"{path}:4:1: malformed YAML" in str(exc.value)


def test_python_tags_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = f"model: !!python/object/apply:os.system ['touch {marker}']\n"
    path = write(tmp_path, "evil.yaml", text)
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    assert str(path) in str(exc.value) and "no Python tags" in str(exc.value)
    assert not marker.exists()


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "dup.yaml", "model:\n  type: toy_model\n  type: toy_model\n")
    with pytest.raises(SpecError, match="duplicate key 'type'"):
        load_spec(path)


def test_base_cycle_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "_base_: b.yaml\n")
    write(tmp_path, "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(SpecError, match=r"cycle in _base_: .*a.yaml -> .*b.yaml -> .*a.yaml"):
        load_spec(tmp_path / "a.yaml")


def test_missing_base_names_the_including_file(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "_base_: nowhere.yaml\n")
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    assert "nowhere.yaml: spec file not found" in str(exc.value)
    assert f"named in _base_ of {path}" in str(exc.value)


def test_unknown_section_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", BASE + "trian: {}\n")
    with pytest.raises(SpecError, match="unknown top-level section 'trian'; known sections:"):
        load_spec(path)


def test_missing_spec_file() -> None:
    with pytest.raises(SpecError, match="no_such_spec.yaml: spec file not found"):
        load_spec("no_such_spec.yaml")


def test_zoo_name_without_suffix_and_class_names() -> None:
    spec = load_spec("tiny_ssd_shapes")
    assert spec.path is not None and spec.path.endswith("tiny_ssd_shapes.yaml")
    assert class_names_from_spec(spec) == ["rectangle", "ellipse", "triangle"]
    fine = load_spec("tiny_ssd_shapes_finetune", ["train.load_from=x.pt"])
    assert class_names_from_spec(fine) == ["ellipse", "triangle"]
    assert fine.model.params["num_classes"] == 2
    assert fine.section("train").load_from == "x.pt"
