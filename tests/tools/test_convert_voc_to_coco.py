"""tools/convert_voc_to_coco.py: the COCO file loads back to the same targets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from anchorage.core.build import build_component
from anchorage.core.cli import run_tool
from anchorage.plugins.datasets.voc import SAMPLE_VOC

ROOT = Path(__file__).resolve().parents[2]
BCCD = (ROOT / ".." / "shared" / "datasets" / "bccd" / "BCCD").resolve()
sys.path.insert(0, str(ROOT / "tools"))

import convert_voc_to_coco  # noqa: E402


def _same_targets(voc_root: Path, split: str, classes: list[str], out: Path) -> None:
    voc = build_component(
        "dataset", {"type": "voc", "root": str(voc_root), "split": split, "classes": classes}
    )
    coco = build_component(
        "dataset", {"type": "coco", "ann_file": str(out), "img_dir": str(voc_root)}
    )
    assert coco.class_names == classes and len(coco) == len(voc)
    for a, b in zip(voc.records, coco.records):
        assert (a.image_id, a.file, a.height, a.width) == (b.image_id, b.file, b.height, b.width)
        assert (a.boxes == b.boxes).all() and (a.labels == b.labels).all()
        assert (a.iscrowd == b.iscrowd).all() and (a.area == b.area).all()
    image_a, target_a = voc[0]
    image_b, target_b = coco[0]
    assert torch.equal(image_a, image_b) and torch.equal(target_a["boxes"], target_b["boxes"])


def test_sample_round_trip(tmp_path, capsys):
    out = tmp_path / "sample.json"
    args = [str(SAMPLE_VOC), "--split", "test", "--classes", "cell,dot", "--out", str(out)]
    assert run_tool(convert_voc_to_coco.main, args) == 0
    assert "1 images, 2 annotations, 2 categories" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["images"][0]["file_name"] == "JPEGImages/s1.jpg"
    assert [a["iscrowd"] for a in data["annotations"]] == [0, 1]  # difficult -> crowd
    _same_targets(SAMPLE_VOC, "test", ["cell", "dot"], out)


def test_unknown_class_is_a_clear_error(tmp_path, capsys):
    args = [str(SAMPLE_VOC), "--split", "test", "--classes", "cell", "--out", str(tmp_path / "x")]
    assert run_tool(convert_voc_to_coco.main, args) == 2
    err = capsys.readouterr().err
    assert "s1.jpg" in err and "'dot' is not a known class" in err
    assert "--max-bad-samples 0" in err and "add the class to --classes" in err
    assert "spec" not in err  # the tool has no spec: the hint names its own options
    assert not (tmp_path / "x").exists()
    # --max-bad-samples skips the unusable annotation; the report is the logged warning, not
    # printed a second time
    args += ["--max-bad-samples", "1"]
    assert run_tool(convert_voc_to_coco.main, args) == 0
    captured = capsys.readouterr()
    assert "1 images, 1 annotations" in captured.out and "unknown_category" not in captured.out


@pytest.mark.skipif(not BCCD.is_dir(), reason="BCCD not available at ../shared/datasets")
def test_bccd_test_split(tmp_path, capsys):
    out = tmp_path / "bccd_test.json"
    args = [str(BCCD), "--split", "test", "--classes", "RBC,WBC,Platelets", "--out", str(out)]
    assert run_tool(convert_voc_to_coco.main, args) == 0
    assert "72 images" in capsys.readouterr().out
    _same_targets(BCCD, "test", ["RBC", "WBC", "Platelets"], out)
