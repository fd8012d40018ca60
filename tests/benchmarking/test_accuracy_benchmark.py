"""benchmarks/accuracy.py: targets are checked against the keys the spec's metrics report."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from anchorage.core import load_spec
from anchorage.core.errors import AnchorageError

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("accuracy_bench", ROOT / "benchmarks/accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Named:
    class_names = ["rectangle", "ellipse", "triangle"]


def test_localizer_metrics_report_cls_and_loc_keys() -> None:
    bench = _module()
    keys = bench.metric_keys(load_spec(ROOT / "specs/localizer_r18_shapes.yaml"), Named())
    assert {"cls/top1", "cls/mean_acc", "loc/mIoU", "loc/IoU50", "loc/acc"} <= set(keys)
    bench.check_targets({"cls/top1": 0.9, "loc/mIoU": 0.6}, keys)
    with pytest.raises(AnchorageError, match=r"accuracy/top1.*they report: .*cls/top1"):
        bench.check_targets({"accuracy/top1": 0.9}, keys)


def test_an_unknown_target_is_refused_before_training(tmp_path: Path) -> None:
    # before the check, a misspelt key trained for the whole budget and then read NaN: FAIL
    bench = _module()
    tiny = [f"data.{s}.dataset.num_images=2" for s in ("train", "val")]
    sets = [a for t in tiny for a in ("--set", t)]
    argv = [str(ROOT / "specs/localizer_r18_shapes.yaml"), "--minutes", "2", *sets,
            "--set", f"data.train.dataset.root={tmp_path}", "--set",
            f"data.val.dataset.root={tmp_path}", "--work-dir", str(tmp_path / "wd"),
            "--targets", "box_iou/mIoU=0.6"]  # fmt: skip
    with pytest.raises(AnchorageError, match="box_iou/mIoU"):
        bench.main(argv)
    assert not (tmp_path / "wd").exists()


def test_records_show_paths_inside_the_working_directory_relative(monkeypatch) -> None:
    bench = _module()
    monkeypatch.chdir(ROOT)
    assert bench.shown_path(str(ROOT / "specs/x.yaml")) == "specs/x.yaml"
    assert bench.shown_path("specs/x.yaml") == "specs/x.yaml"
    assert bench.shown_path("/elsewhere/x.yaml") == "/elsewhere/x.yaml"
