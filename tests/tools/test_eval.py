"""tools/eval.py: COCO table + JSON; foreign and malicious checkpoints are refused (exit 2)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
import torch
import yaml

from anchorage.core import Spec
from anchorage.core.cli import run_tool
from anchorage.core.engine import evaluate_checkpoint, train

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def trained(toys, tmp_path: Path) -> tuple[Path, Path]:
    """(spec file, checkpoint) of a 1-epoch toy run."""
    data = toys.toy_spec(epochs=1, log_images=0)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    train(Spec.from_dict(data), tmp_path / "work", progress=False)
    return spec, tmp_path / "work" / "last.pt"


def tool(*argv: str) -> int:
    main = runpy.run_path(str(ROOT / "tools" / "eval.py"))["main"]
    return run_tool(main, list(argv))


def test_prints_coco_table_and_writes_json(trained, tmp_path: Path, capsys) -> None:
    spec, ckpt = trained
    out = tmp_path / "results.json"
    assert tool(str(spec), str(ckpt), "--out", str(out), "--no-progress") == 0
    printed = capsys.readouterr().out
    assert "Average Precision  (AP) @[ IoU=0.50:0.95" in printed and "square" in printed
    written = json.loads(out.read_text())
    assert written["split"] == "val" and "bbox/AP50" in written["metrics"]
    again = evaluate_checkpoint(Spec.from_dict(yaml.safe_load(spec.read_text())), ckpt)
    assert written["metrics"] == pytest.approx(again.metrics)
    assert json.loads(printed.strip().splitlines()[-1]) == pytest.approx(again.metrics)


def test_checkpoint_of_another_model_lists_keys_and_shapes(trained, capsys) -> None:
    spec, ckpt = trained
    code = tool(str(spec), str(ckpt), "--set", "model.hidden=4", "--no-progress")
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "does not fit the model" in err
    assert "backbone.weight: checkpoint (8, 3, 3, 3) vs model (4, 3, 3, 3)" in err


def test_pickled_code_is_refused_without_running_it(trained, tmp_path: Path, capsys) -> None:
    spec, _ckpt = trained
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))  # unpickling would create the marker file

    evil = tmp_path / "evil.pt"
    torch.save({"format": "anchorage", "model": Payload()}, evil)
    assert not marker.exists()
    code = tool(str(spec), str(evil), "--no-progress")
    err = capsys.readouterr().err
    assert code == 2 and "refused to load" in err and "nothing in it was run" in err
    assert not marker.exists()


def test_missing_checkpoint_and_split(trained, tmp_path: Path, capsys) -> None:
    spec, ckpt = trained
    assert tool(str(spec), str(tmp_path / "none.pt"), "--no-progress") == 2
    assert "checkpoint file not found" in capsys.readouterr().err
    assert tool(str(spec), str(ckpt), "--split", "test", "--no-progress") == 2
    assert "data.test" in capsys.readouterr().err


def test_detections_file_loads_with_pycocotools_and_gives_the_table_ap(
    trained, tmp_path: Path, capsys
) -> None:
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    spec, ckpt = trained
    ann = ROOT / "plugins" / "datasets" / "sample" / "coco.json"  # category ids 3 and 7
    data = yaml.safe_load(spec.read_text())
    data["data"]["val"] = {"dataset": {"type": "coco", "ann_file": str(ann)}, "batch_size": 2}
    coco_spec = tmp_path / "coco_spec.yaml"
    coco_spec.write_text(yaml.safe_dump(data))
    dets = tmp_path / "out" / "dets.json"
    assert tool(str(coco_spec), str(ckpt), "--detections", str(dets), "--no-progress") == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1] == f"wrote {dets}"
    table_ap = json.loads(printed[-2])["bbox/AP"]
    results = json.loads(dets.read_text())
    assert len(results) == 2  # the toy predicts one box per image
    assert {r["category_id"] for r in results} <= {3, 7}
    assert all(0 <= r["bbox"][0] <= 32 and r["bbox"][2] >= 0 for r in results)  # 32x24 pixels
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann))
        e = COCOeval(gt, gt.loadRes(str(dets)), iouType="bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    assert e.stats[0] == pytest.approx(table_ap, abs=1e-4)
