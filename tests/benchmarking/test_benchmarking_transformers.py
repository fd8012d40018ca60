"""hf: baselines: transformers twins derived from a set_prediction spec, converted, timed.

Tiny DETR / Deformable DETR configs (``--set`` over the shapes specs, 64x64 images) so that a
whole ``run_benchmark`` takes a few seconds: the twin's config follows the spec, the spec's
model takes the twin's converted weights through the runner's twin mechanism, both give the
same detections, a train step runs and its stages show the matcher (``assign``).
"""

from __future__ import annotations

import builtins
import sys
from pathlib import Path

import pytest
import torch

from anchorage.benchmarking import EntryRequest, Settings, environment, markdown, run_benchmark
from anchorage.benchmarking.report import matching_share, twin_pairs
from anchorage.benchmarking.settings import load_suite
from anchorage.benchmarking.transformers_twins import (
    build_transformers_twin,
    plan_twin,
    require_transformers,
)
from anchorage.core import load_spec
from anchorage.core.errors import AnchorageError, SpecError

transformers = pytest.importorskip("transformers")
pytest.importorskip("scipy")

from anchorage.plugins.set_prediction.convert import convert_transformers_detr  # noqa: E402

CONVERTERS = {("transformers", "set_prediction"): convert_transformers_detr}
TINY = (
    "model.backbone.norm=frozen_bn",
    "model.num_queries=5",
    "model.transformer.hidden_dim=16",
    "model.transformer.num_heads=2",
    "model.transformer.encoder_layers=1",
    "model.transformer.decoder_layers=2",
    "model.transformer.ffn_dim=32",
    "model.preprocess.fixed_size=[64, 64]",
)
TINY_DEFORMABLE = (
    *TINY,
    "model.transformer.hidden_dim=32",  # GroupNorm(32) in the input projection
    "model.preprocess.fixed_size=[96, 96]",  # its 1x1 stride-64 level at 64 px: one value
    "model.transformer.encoder_points=2",
    "model.transformer.decoder_points=2",
    "model.postprocessor.topk=10",
)
REFINE = ("model.transformer.with_box_refine=true", "model.head.shared=false")
FAST = Settings(
    batch_sizes=(2,),
    image_size=64,
    rounds=1,
    warmup=0,
    stage_iters=1,
    train=True,
    progress=False,
    threads=1,
    clock="cpu",
)


def _detr_spec(*extra: str):  # noqa: ANN202
    return load_spec("detr_r18_shapes.yaml", overrides=[*TINY, *extra])


def test_config_follows_the_spec() -> None:
    plan = plan_twin("hf:detr", _detr_spec())
    c = plan.config
    assert (c["d_model"], c["encoder_attention_heads"], c["decoder_attention_heads"]) == (16, 2, 2)
    assert (c["encoder_layers"], c["decoder_layers"], c["encoder_ffn_dim"]) == (1, 2, 32)
    assert (c["num_queries"], c["num_labels"], c["auxiliary_loss"]) == (5, 3, True)
    assert (c["class_cost"], c["bbox_cost"], c["giou_cost"], c["eos_coefficient"]) == (1, 5, 2, 0.1)
    # ResNet-18 cut after layer3, the spec's last returned level
    assert plan.backbone == {
        "embedding_size": 64,
        "depths": [2, 2, 2],
        "hidden_sizes": [64, 128, 256],
        "layer_type": "basic",
        "out_features": ["stage3"],
    }
    spec = load_spec("deformable_detr_r50_coco.yaml", overrides=list(REFINE))
    plan = plan_twin("hf:deformable_detr_refine", spec)
    assert plan.backbone["out_features"] == ["stage2", "stage3", "stage4"]
    assert plan.backbone["layer_type"] == "bottleneck" and plan.top_k == 100
    assert plan.config["num_feature_levels"] == 4 and plan.config["with_box_refine"] is True
    assert plan.config["num_queries"] == 300 and plan.config["encoder_n_points"] == 4


def test_trainable_backbone_follows_trainable_layers() -> None:
    torch.manual_seed(0)
    twin = build_transformers_twin("hf:detr", _detr_spec("model.backbone.trainable_layers=2"))
    ours = _detr_spec("model.backbone.trainable_layers=2").model.build()
    assert sum(p.requires_grad for p in twin.model.model.backbone.parameters()) == sum(
        p.requires_grad for p in ours.backbone.parameters()
    )
    trainable = {n for n, p in twin.model.named_parameters() if p.requires_grad and "stages" in n}
    assert trainable and all("stages.1." in n or "stages.2." in n for n in trainable)


@pytest.mark.parametrize(
    "overrides, source, key",
    [
        (("model.backbone.norm=bn",), "hf:detr", "model.backbone.norm"),
        (("model.transformer.query_init=learned",), "hf:detr", "model.transformer.query_init"),
        (("model.matcher.class_weight=1.5",), "hf:detr", "model.matcher.class_weight"),
        (("model.transformer.query_groups=3",), "hf:detr", "model.transformer.query_groups"),
        ((), "hf:deformable_detr", "model.transformer.type"),
    ],
)
def test_a_spec_without_a_twin_is_a_spec_error(overrides, source: str, key: str) -> None:
    spec = load_spec("detr_r18_shapes.yaml", overrides=[*TINY, *overrides])
    with pytest.raises(SpecError, match=f"{source} mirrors .*detr_r18_shapes.yaml: {key}:"):
        plan_twin(source, spec)


def test_refinement_needs_the_refine_twin() -> None:
    spec = load_spec("deformable_detr_r18_shapes.yaml", overrides=[*TINY_DEFORMABLE, *REFINE])
    with pytest.raises(SpecError, match="model.transformer.with_box_refine: .* needs False"):
        plan_twin("hf:deformable_detr", spec)


def test_two_stage_has_no_twin() -> None:
    spec = load_spec(
        "deformable_detr_r18_shapes.yaml",
        overrides=[
            *TINY_DEFORMABLE,
            *REFINE,
            "model.transformer.two_stage=true",
            "model.head.shared=false",
        ],
    )
    with pytest.raises(SpecError, match="model.transformer.two_stage: .* needs False"):
        plan_twin("hf:deformable_detr_refine", spec)


def test_missing_transformers_names_the_pip_command(monkeypatch) -> None:
    real_import = builtins.__import__

    def no_transformers(name, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if name == "transformers" or name.startswith("transformers."):
            raise ImportError("No module named 'transformers'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_transformers)
    with pytest.raises(AnchorageError, match="pip install transformers"):
        require_transformers()
    spec = "detr_r18_shapes.yaml"
    requests = [EntryRequest(source="hf:detr"), EntryRequest(source=spec, twin="hf:detr")]
    with pytest.raises(AnchorageError, match="pip install transformers"):
        run_benchmark(requests, FAST)


def test_an_hf_entry_needs_a_spec_to_mirror() -> None:
    with pytest.raises(AnchorageError, match="hf:detr: a transformers twin is built to mirror"):
        run_benchmark([EntryRequest(source="hf:detr")], FAST)
    with pytest.raises(AnchorageError, match="unknown transformers baseline 'hf:dino'"):
        run_benchmark([EntryRequest(source="hf:dino")], FAST)


def _check_pair(ours, twin, extra_params: int = 0) -> None:  # noqa: ANN001
    assert ours.errors == [] and twin.errors == []
    assert ours.weights == f"converted from {twin.name}" and ours.twin == twin.name
    assert ours.twin_check["same"], ours.twin_check
    assert ours.twin_check["detections"] == ours.twin_check["twin_detections"]
    assert ours.params - twin.params == ours.trainable_params - twin.trainable_params
    assert ours.params - twin.params == extra_params
    for r in (ours, twin):
        assert r.train[2]["n"] == 1 and r.infer[2]["n"] == 1
        assert {"backbone", "transformer", "head", "assign", "loss"} <= set(r.train_stages)
        assert r.train_stages["backward_step"] > 0 and 0 < matching_share(r) < 1
        assert "assign" not in r.stages and "postprocess" in r.stages


def test_detr_twin_converts_agrees_and_trains() -> None:
    spec = "detr_r18_shapes.yaml"
    requests = [
        EntryRequest(source="hf:detr"),
        EntryRequest(source=spec, twin="hf:detr", overrides=TINY),
    ]
    twin, ours = run_benchmark(requests, FAST, converters=CONVERTERS)
    _check_pair(ours, twin)
    pair = twin_pairs([twin, ours])[0]
    assert pair["outputs_same"] is True and pair["matching_share"] is not None
    text = markdown([twin, ours], FAST, environment("cpu"))
    assert "### Train-step stages" in text and "matching share" in text
    assert f"transformers {transformers.__version__}" in text


@pytest.mark.slow
def test_deformable_twins_by_label_and_by_guess() -> None:
    """Two labelled twins of the same kind, each named by its spec entry; a third spec entry
    without a twin is paired with the unclaimed hf: entry that can mirror it."""
    spec = "deformable_detr_r18_shapes.yaml"
    requests = [
        EntryRequest(source="hf:deformable_detr", label="hf:plain"),
        EntryRequest(source=spec, label="plain", twin="hf:plain", overrides=TINY_DEFORMABLE),
        EntryRequest(source="hf:deformable_detr_refine", label="hf:refine"),
        EntryRequest(source=spec, label="refine", twin="hf:refine",
                     overrides=(*TINY_DEFORMABLE, *REFINE)),
        EntryRequest(source="hf:deformable_detr_refine"),
        EntryRequest(source=spec, label="guess", overrides=(*TINY_DEFORMABLE, *REFINE)),
    ]  # fmt: skip
    results = run_benchmark(requests, FAST, converters=CONVERTERS)
    # with refinement each of our 2 layers has its own copy of transformers' tied classifier
    for (twin, ours), extra in zip(zip(results[::2], results[1::2]), (0, 99, 99)):
        _check_pair(ours, twin, extra)
    assert [r.twin for r in results[1::2]] == ["hf:plain", "hf:refine", "hf:deformable_detr_refine"]


def test_a_twin_named_twice_must_be_split() -> None:
    spec = "detr_r18_shapes.yaml"
    requests = [
        EntryRequest(source="hf:detr"),
        EntryRequest(source=spec, label="a", twin="hf:detr", overrides=TINY),
        EntryRequest(source=spec, label="b", twin="hf:detr", overrides=TINY),
    ]
    with pytest.raises(
        AnchorageError, match=r"hf:detr is the twin of several spec entries \(a, b\)"
    ):
        run_benchmark(requests, FAST)


def test_shipped_suite_loads() -> None:
    root = Path(__file__).resolve().parents[2]
    suite = load_suite(root / "benchmarks" / "vs_transformers.yaml")
    assert suite.settings["twin_target"] == 1.0
    pairs = [(r.name, r.twin) for r in suite.entries if r.twin]
    assert len(pairs) == 4 and all(twin.startswith("hf:") for _, twin in pairs)
    names = {r.name for r in suite.entries}
    assert all(twin in names for _, twin in pairs)
    for r in suite.entries:
        if r.twin:
            plan_twin(next(e.source for e in suite.entries if e.name == r.twin),
                      load_spec(r.source, overrides=list(r.overrides)))  # fmt: skip


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
