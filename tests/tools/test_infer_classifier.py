"""tools/infer.py on a classifier: the top-k drawn on the picture and listed in the JSON."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
import torch
from torchvision.transforms.v2.functional import to_pil_image

from anchorage.core import build_model, load_spec, save_checkpoint
from anchorage.core.cli import run_tool

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_classifier_topk_in_json_and_picture(tmp_path: Path, capsys) -> None:
    spec = load_spec("specs/resnet18_cells.yaml")
    torch.manual_seed(0)
    model = build_model(spec)
    ckpt = save_checkpoint(tmp_path / "c.pt", {"model": model.state_dict(), "spec": spec.to_dict()})
    image = tmp_path / "cell.png"
    to_pil_image(torch.rand(3, 40, 48)).save(image)
    main = runpy.run_path(str(ROOT / "tools" / "infer.py"))["main"]
    out = tmp_path / "out"
    code = run_tool(main, ["specs/resnet18_cells.yaml", str(ckpt), str(image), "--out", str(out),
                           "--no-progress", "--classes", "RBC,WBC,Platelets"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    info = json.loads((out / "cell.json").read_text())
    topk = info["topk"]
    assert [t["class"] for t in topk] and {t["class"] for t in topk} <= {"RBC", "WBC", "Platelets"}
    assert len(topk) == 3 and topk[0]["score"] >= topk[-1]["score"]
    assert abs(sum(t["score"] for t in topk) - 1.0) < 1e-4  # all three classes: probabilities
    assert (out / "cell.png").is_file()
