"""tools/kmeans_anchors.py and the k-means it runs (1 − IoU distance on box sizes)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import yaml

from anchorage.core import load_spec
from anchorage.core.cli import run_tool
from anchorage.plugins.anchors.kmeans import kmeans_shapes, mean_best_iou, shape_iou

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("kmeans_tool", ROOT / "tools" / "kmeans_anchors.py")
tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tool)


def _write_spec(tmp_path: Path, **dataset) -> Path:
    ds = {"type": "shapes", "num_images": 40, "root": str(tmp_path / "cache"), **dataset}
    spec = {
        "model": {
            "type": "single_shot",
            "num_classes": 3,
            "preprocess": {"fixed_size": [64, 64]},
            "backbone": {"type": "tiny_ssd_base"},
            "anchor_generator": {"type": "yolo_anchors", "shapes": [[[4, 4]], [[60, 60]]]},
        },
        "data": {"train": {"dataset": ds}},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_shape_iou_and_kmeans_recover_clusters():
    assert torch.allclose(
        shape_iou(torch.tensor([[2.0, 4.0]]), torch.tensor([[4.0, 2.0]])), torch.tensor([[1 / 3]])
    )
    torch.manual_seed(0)
    centres = torch.tensor([[10.0, 10.0], [40.0, 20.0], [20.0, 60.0]])
    wh = (centres[torch.arange(300) % 3] * (1 + 0.05 * torch.randn(300, 2))).abs()
    found = kmeans_shapes(wh, 3, seed=1)
    assert torch.allclose(found, centres[centres.prod(-1).argsort()], rtol=0.05)
    assert torch.equal(found, kmeans_shapes(wh, 3, seed=1))
    assert mean_best_iou(wh, found) > 0.9 > mean_best_iou(wh, found[:1])
    with pytest.raises(ValueError, match="k=5 for 4 boxes"):
        kmeans_shapes(wh[:4], 5)


def test_tool_prints_both_fits_and_writes_spec_ready_yaml(tmp_path, capsys):
    spec = _write_spec(tmp_path)
    out = tmp_path / "anchors.yaml"
    assert run_tool(tool.main, [str(spec), "--k", "4", "--seed", "3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    found = float(text.split("mean best-anchor IoU ")[1].split()[0])
    current = float(
        text.split("current anchors (yolo_anchors, 2): mean best-anchor IoU ")[1].split()[0]
    )
    assert found > current and found > 0.6
    written = yaml.safe_load(out.read_text())
    gen = written["model"]["anchor_generator"]
    assert gen["type"] == "yolo_anchors" and [len(level) for level in gen["shapes"]] == [2, 2]
    # spec-ready: the YAML merges into the spec and validates; shapes are model-input pixels
    merged = load_spec(
        spec, [f"model.anchor_generator={yaml.safe_dump(gen, default_flow_style=True).strip()}"]
    )
    shapes = merged.model.params["anchor_generator"].build().cfg.shapes
    assert max(max(s) for level in shapes for s in level) <= 64


@pytest.mark.parametrize(
    ("dataset", "args", "message"),
    [
        (
            {"num_images": 2, "min_objects": 0, "max_objects": 1, "seed": 5},
            ["--k", "2"],
            "has no boxes",
        ),
        ({"num_images": 2}, ["--k", "500"], "--k: expected 1.."),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, capsys, dataset, args, message):
    spec = _write_spec(tmp_path, **dataset)
    assert run_tool(tool.main, [str(spec), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
