"""Wrong roles, composition mistakes and nested typos stop print_spec and train with exit 2,
one line naming the key paths involved, before anything is written."""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from anchorage.core.cli import run_tool, shorten_long_words

ROOT = Path(__file__).resolve().parents[2]
RCNN = "specs/faster_rcnn_r18_fpn_bccd.yaml"

# (spec, --set override, regular expressions the one-line message must contain)
CASES = {
    "wrong_role_without_role": (
        RCNN,
        "model.roi_box.loss.type=multibox",
        [
            r"^--set model\.roi_box\.loss\.type=multibox: model\.roi_box\.loss\.type: ",
            r"takes a roi_box_loss",
            r"loss 'multibox' is (a component without a role|dense_loss)",
            r"roi_box_loss components: fast_rcnn_loss",
        ],
    ),
    "wrong_role_with_role": (
        RCNN,
        "model.rpn.loss.type=fast_rcnn_loss",
        [r"model\.rpn\.loss\.type: ", r"takes a rpn_loss", r"'fast_rcnn_loss' is roi_box_loss"],
    ),
    "nested_unknown_name": (
        RCNN,
        "model.rpn.matcher={type: max_iuo}",
        [r"^--set model\.rpn\.matcher=.*: model\.rpn\.matcher\.type: ", r"did you mean 'max_iou'"],
    ),
    "nested_range": (
        RCNN,
        "model.rpn.sampler.positive_fraction=2",
        [r"model\.rpn\.sampler\.positive_fraction: ", r"<= 1"],
    ),
    "nested_unknown_parameter": (
        RCNN,
        "model.roi_box.sampler.positve_fraction=0.3",
        [r"model\.roi_box\.sampler\.positve_fraction: ", r"did you mean 'positive_fraction'"],
    ),
    "list_item": (
        "specs/tiny_ssd_shapes.yaml",
        "data.train.transforms.1.type=horizontal_flp",
        [r"^--set data\.train.*: data\.train\.transforms\[1\]\.type: ", r"'horizontal_flip'"],
    ),
    "featmap_names": (
        RCNN,
        "model.roi_box.roi_extractor.featmap_names=[p2, p9]",
        [
            r"model\.roi_box\.roi_extractor\.featmap_names: \['p9'\] is not a feature of "
            r"model\.neck \(p2, p3, p4, p5, p6\)"
        ],
    ),
    "rpn_anchor_levels": (
        RCNN,
        "model.rpn.anchor_generator.sizes=[[16], [32]]",
        [r"^--set .*: model\.rpn\.anchor_generator: 2 anchor levels, but model\.neck gives 5"],
    ),
    "ssd_anchor_levels": (
        "specs/tiny_ssd_shapes.yaml",
        "model.anchor_generator.sizes=[[0.2], [0.3]]",
        [r"model\.anchor_generator: 2 anchor levels .* model\.backbone gives 5 feature levels"],
    ),
    "segmentation_feature": (
        "specs/fcn_r18_shapes.yaml",
        "model.feature=c9",
        [r"model\.feature: 'c9' is not a feature of model\.backbone"],
    ),
    "num_classes_vs_dataset": (
        RCNN,
        "model.num_classes=5",
        [
            r"^--set model\.num_classes=5: model\.num_classes: 5, but data\.train\.dataset ",
            r"has 3 classes \(RBC, WBC, Platelets\)",
        ],
    ),
}


def _check_message(err: str, patterns: list[str]) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    message = lines[0].removeprefix("error: ")
    for pattern in patterns:
        assert re.search(pattern, message), (pattern, message)


@pytest.mark.parametrize("case", list(CASES))
def test_print_spec_reports_one_line(case: str, capsys: pytest.CaptureFixture) -> None:
    spec, override, patterns = CASES[case]
    main = runpy.run_path(str(ROOT / "tools" / "print_spec.py"))["main"]
    assert run_tool(main, [str(ROOT / spec), "--set", override]) == 2
    _check_message(capsys.readouterr().err, patterns)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_train_exits_2_before_writing(case: str, tmp_path: Path) -> None:
    spec, override, patterns = CASES[case]
    work = tmp_path / "work"
    cmd = [sys.executable, "tools/train.py", spec, "--set", override, "--work-dir", str(work)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    _check_message(proc.stderr, patterns)
    assert not work.exists(), sorted(work.rglob("*"))


def test_a_pasted_120kb_value_is_cut_in_the_message(capsys: pytest.CaptureFixture) -> None:
    main = runpy.run_path(str(ROOT / "tools" / "print_spec.py"))["main"]
    value = "a" * 120_000
    spec = str(ROOT / "specs" / "tiny_ssd_shapes.yaml")
    assert run_tool(main, [spec, "--set", f"model.backbone.type={value}"]) == 2
    err = capsys.readouterr().err
    assert len(err) < 1000 and err.count("\n") == 1
    assert "(120020 characters): model.backbone.type: unknown backbone" in err
    assert "(120001 characters)'; registered backbone names: darknet," in err


def test_only_long_words_are_cut() -> None:
    path = "/data/" + "d" * 255 + "/" + "e" * 255 + "/ann.json"  # a long path stays whole
    assert shorten_long_words(f"{path}: bad") == f"{path}: bad"
    cut = shorten_long_words("x=" + "b" * 1500 + ", then")
    assert cut == "x=" + "b" * 78 + "…" + "b" * 12 + " (1502 characters), then"
