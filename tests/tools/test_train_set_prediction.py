"""tools/train.py on the set-prediction detectors: 2-step runs with one-line component swaps,
and the bad inputs the skeleton refuses (each one line, exit 2, nothing written)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from anchorage.core.cli import run_tool

pytest.importorskip("scipy")
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]

SMALL = (
    "model.transformer.hidden_dim=32", "model.transformer.num_heads=4",
    "model.transformer.encoder_layers=1", "model.transformer.decoder_layers=2",
    "model.transformer.ffn_dim=64",
)  # fmt: skip


def tool(*argv: str) -> int:
    main = runpy.run_path(str(ROOT / "tools" / "train.py"))["main"]
    return run_tool(main, list(argv))


def args(tmp_path: Path, spec: str, *extra: str) -> list[str]:
    """``spec`` on 4 shapes images for 2 steps, no evaluation during training."""
    sets = [
        f"data.train.dataset.root={tmp_path / 'cache'}", "data.train.dataset.num_images=4",
        f"data.val.dataset.root={tmp_path / 'cache'}", "data.val.dataset.num_images=2",
        "data.train.batch_size=2", "data.val.batch_size=2", "train.log_images=0",
        "train.epochs=1", "train.eval_interval=0", *SMALL, *extra,
    ]  # fmt: skip
    argv = [spec, "--work-dir", str(tmp_path / "w"), "--no-progress"]
    for item in sets:
        argv += ["--set", item]
    return argv


@pytest.mark.parametrize(
    ("spec", "swap"),
    [
        ("specs/detr_r18_shapes.yaml", None),
        # the matching cost: focal class cost (Deformable DETR's) over the softmax head's columns
        (
            "specs/detr_r18_shapes.yaml",
            "model.matcher={type: hungarian, class_cost: focal, background_column: true}",
        ),
        # the decoder layer: pre-norm instead of DETR's post-norm
        ("specs/detr_r18_shapes.yaml", "model.transformer.decoder_layer.pre_norm=true"),
        # the query initialisation: learned content as well as learned positions
        ("specs/detr_r18_shapes.yaml", "model.transformer.query_init=learned"),
        # Group DETR: 3 groups of queries in training, each matched one-to-one on its own
        ("specs/detr_r18_shapes.yaml", "model.transformer.query_groups=3"),
        ("specs/deformable_detr_r18_shapes.yaml", None),
        ("specs/deformable_detr_r18_shapes.yaml", "model.transformer.with_box_refine=true"),
        # two-stage: queries from the encoder's top proposals (it needs box refinement), with
        # the encoder proposals' loss terms (*_enc)
        (
            "specs/deformable_detr_r18_shapes.yaml",
            ("model.transformer.two_stage=true", "model.transformer.with_box_refine=true",
             "model.head.shared=false"),
        ),
        ("specs/deformable_detr_r18_shapes.yaml", "model.transformer.query_groups=3"),
        # the shipped recipe that reaches the shapes target (query groups + box refinement)
        ("specs/group_deformable_detr_r18_shapes.yaml", None),
    ],
    ids=[
        "detr", "matcher_cost", "decoder_layer", "query_init", "detr_query_groups", "deformable",
        "box_refine", "two_stage", "query_groups", "group_deformable",
    ],
)  # fmt: skip
def test_two_steps_with_one_line_swaps(
    tmp_path: Path, capsys, spec: str, swap: str | tuple[str, ...] | None
) -> None:
    swaps = (swap,) if isinstance(swap, str) else swap or ()
    extra = ["train.max_iters=2", *swaps]
    assert tool(*args(tmp_path, spec, *extra)) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1])["iteration"] == 2
    logged = [json.loads(x) for x in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    losses = [x for x in logged if "loss_giou" in json.dumps(x)]
    assert losses, "no set-criterion terms logged"
    if "model.transformer.two_stage=true" in swaps:
        assert any("loss_giou_enc" in json.dumps(x) for x in logged), "no encoder terms logged"


def test_two_stage_without_box_refinement_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    argv = args(
        tmp_path, "specs/deformable_detr_r18_shapes.yaml", "model.transformer.two_stage=true"
    )
    assert tool(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert "model.transformer" in err and "two_stage: true needs with_box_refine: true" in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "w").exists()


def test_two_stage_with_query_groups_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    argv = args(
        tmp_path, "specs/deformable_detr_r18_shapes.yaml", "model.transformer.two_stage=true",
        "model.transformer.with_box_refine=true", "model.head.shared=false",
        "model.transformer.query_groups=2",
    )  # fmt: skip
    assert tool(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert "model.transformer" in err and "query_groups: 2 needs learned queries" in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            ("model.matcher.class_weight=0", "model.matcher.l1_weight=0",
             "model.matcher.giou_weight=0"),
            "every matching cost weight is zero",
        ),
        (("model.num_queries=-1",), "model.num_queries"),
        (("model.num_queries=2",), "model.num_queries: 2 queries, but"),
    ],
    ids=["zero_costs", "negative_queries", "more_objects_than_queries"],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2(tmp_path: Path, capsys, extra, expected: str) -> None:
    argv = args(tmp_path, "specs/detr_r18_shapes.yaml", *extra)
    assert tool(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "w").exists()
