"""Nested validation errors keep their key path; check_spec finds parts that do not fit."""

from __future__ import annotations

import copy

import attrs
import pytest
import torch

from anchorage.core import CompositionError, Spec, SpecError, build_model, check_spec, load_spec
from anchorage.core.composition import check_model_fits, human_bytes
from anchorage.core.config import validate_section
from anchorage.core.spec import SPECS_DIR
from anchorage.plugins.datasets.coco import SAMPLE_DIR
from anchorage.plugins.datasets.voc import SAMPLE_VOC
from anchorage.plugins.models.two_stage import _TINY


@attrs.frozen(kw_only=True)
class Inner:
    fraction: float = attrs.field(default=0.5, validator=attrs.validators.le(1.0))


@attrs.frozen(kw_only=True)
class Outer:
    inner: Inner | None = None
    items: tuple[Inner, ...] | None = None
    name: str | int = "x"


def _where(path: str) -> str:
    return f"<{path}>"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"inner": {"fraction": 2}}, "<root.inner.fraction>: root.inner.fraction: 'fraction' must"),
        ({"inner": {"fracton": 1}}, "root.inner.fracton: unknown parameter 'fracton' of section"),
        ({"items": [{}, {"fracton": 1}]}, "root.items[1].fracton: unknown parameter"),
        ({"inner": 3}, "root.inner: expected Inner | None, got 3"),
        ({"name": [1]}, "root.name: expected str | int, got [1]"),
    ],
)
def test_union_errors_keep_the_nested_key_path(data: dict, message: str) -> None:
    with pytest.raises(SpecError) as err:
        validate_section(Outer, data, "root", _where)
    assert message in str(err.value)
    if "fracton" in message:
        assert "did you mean 'fraction'?" in str(err.value)


def _spec(num_classes: int = 2, dataset: dict | None = None, **model: object) -> dict:
    data = copy.deepcopy(_TINY)
    data.update(num_classes=num_classes, type="two_stage", **model)
    voc = {"type": "voc", "root": str(SAMPLE_VOC), "split": "test", "classes": ["cell", "dot"]}
    return {"model": data, "data": {"train": {"dataset": dataset or voc}}}


def test_check_spec_builds_the_model_when_parts_fit() -> None:
    model = check_spec(Spec.from_dict(_spec(), source="ok.yaml"))
    assert model.num_classes == 2


def test_num_classes_against_declared_classes_names_both_paths() -> None:
    with pytest.raises(SpecError) as err:
        check_spec(Spec.from_dict(_spec(num_classes=3), source="x.yaml"))
    message = str(err.value)
    assert message.startswith("x.yaml: model.num_classes: 3, but data.train.dataset (x.yaml)")
    assert "has 2 classes (cell, dot)" in message


def test_classes_read_from_a_built_dataset_only_on_request() -> None:
    coco = {"type": "coco", "ann_file": str(SAMPLE_DIR / "coco.json")}
    spec = Spec.from_dict(_spec(num_classes=3, dataset=coco), source="x.yaml")
    check_spec(spec)  # the coco config declares no classes: not compared without building
    with pytest.raises(SpecError, match=r"has 2 classes \(square, blob\)"):
        check_spec(spec, build_datasets=True)


def test_composition_error_is_prefixed_with_the_file() -> None:
    data = _spec()
    data["model"]["roi_box"]["roi_extractor"]["featmap_names"] = ["p9"]
    with pytest.raises(SpecError) as err:
        check_spec(Spec.from_dict(data, source="x.yaml"))
    assert str(err.value).startswith(
        "x.yaml: model.roi_box.roi_extractor.featmap_names: ['p9'] is not a feature of model.neck"
    )
    with pytest.raises(CompositionError) as raw:
        Spec.from_dict(data, source="x.yaml").model.build()
    assert raw.value.paths == ("model.roi_box.roi_extractor.featmap_names", "model.neck")


def test_head_loss_and_postprocessor_must_agree_on_the_background_column() -> None:
    spec = load_spec("retinanet_r18_fpn_shapes", ["model.loss.background_column=false"])
    with pytest.raises(CompositionError) as info:
        build_model(spec)
    assert str(info.value).startswith(
        "model.head: gives [B,A,C+1] logits with background column 0 but model.loss reads "
        "[B,A,C] logits"
    )
    assert info.value.paths == ("model.head", "model.loss")
    # head and loss agree, the postprocessor does not
    post = ["model.postprocessor.background_column=false"]
    with pytest.raises(CompositionError) as info:
        build_model(load_spec("retinanet_r18_fpn_shapes", post))
    assert str(info.value).startswith(
        "model.loss: reads [B,A,C+1] logits with background column 0 but model.postprocessor "
        "reads [B,A,C] logits"
    )


def test_a_model_too_large_for_memory_is_refused_before_anything_is_allocated() -> None:
    spec = load_spec("tiny_ssd_shapes", ["model.num_classes=1000000000000"])
    with pytest.raises(SpecError) as info:
        check_spec(spec)
    message = str(info.value)
    assert message.startswith(
        "--set model.num_classes=1000000000000: model.num_classes: 1000000000000 makes a model "
        "of 41.6 PB (parameters and buffers; largest head.cls_convs.1.weight 4000000000004x64x3x3)"
    )
    assert message.endswith("of memory; nothing was allocated")


def test_the_memory_bound_is_the_one_given() -> None:
    spec = load_spec("tiny_ssd_shapes")
    model = build_model(spec)
    tensors = [*model.parameters(), *model.buffers()]
    size = sum(t.numel() * t.element_size() for t in tensors)
    check_model_fits(spec, memory=size)
    with pytest.raises(SpecError, match=r": model\.\S+: \d+ makes a model of 1\.2 MB"):
        check_model_fits(spec, memory=size - 1)
    assert human_bytes(999) == "999 B" and human_bytes(41.6e15) == "41.6 PB"


@pytest.mark.parametrize("name", sorted(p.stem for p in SPECS_DIR.glob("*.yaml")))
def test_every_zoo_model_is_estimated_on_the_meta_device(name: str) -> None:
    spec = load_spec(name)
    if spec.get("model") is None:
        pytest.skip("no model section (style transfer)")
    with torch.device("meta"):
        model = spec.model.build()  # the estimate check_model_fits relies on
    assert all(p.is_meta for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) > 1000
