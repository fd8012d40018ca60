"""tools/export.py → tools/infer.py --backend onnxruntime gives eager tools/infer.py's JSON and
drawing, for a set-prediction detector (DETR) and a classifier (random weights)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

ROOT = Path(__file__).resolve().parents[2]
SPECS = {"detr": "detr_r18_shapes.yaml", "classifier": "resnet18_cells.yaml"}
CLASSES = "a,b,c"  # resnet18_cells' dataset needs its crops made first: names from --classes


def _tool(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / name), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def _checkpoint(spec_file: str, path: Path) -> str:
    from anchorage.core import build_model, load_spec
    from anchorage.core.checkpoint import save_checkpoint

    torch.manual_seed(0)
    spec = load_spec(spec_file)
    save_checkpoint(path, {"model": build_model(spec).state_dict(), "spec": spec.to_dict()})
    return str(path)


def _same_detections(got: list[dict], want: list[dict]) -> None:
    """One to one, in any order among equal scores: label, score (1e-4), xywh box (1e-3 px)."""
    assert len(got) == len(want) > 0
    free = list(got)
    for w in want:
        match = [
            g for g in free
            if g["class"] == w["class"] and abs(g["score"] - w["score"]) <= 1e-4
            and max(abs(a - b) for a, b in zip(g["bbox"], w["bbox"])) <= 1e-3
        ]  # fmt: skip
        assert match, f"no exported detection matches eager {w}"
        free.remove(match[0])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SPECS))
def test_export_then_infer_onnxruntime_as_eager(name: str, tmp_path: Path) -> None:
    from PIL import Image

    noise = torch.randint(0, 256, (100, 90, 3), generator=torch.Generator().manual_seed(0))
    image = tmp_path / "a.png"
    Image.fromarray(noise.to(torch.uint8).numpy()).save(image)
    spec = str(ROOT / "specs" / SPECS[name])
    ckpt = _checkpoint(spec, tmp_path / "m.pt")
    file = tmp_path / "m.onnx"
    done = _tool("export.py", spec, ckpt, "--format", "onnx", "--out", str(file), "--dynamic",
                 "--classes", CLASSES)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout
    common = [str(image), "--no-progress", "--score-thresh", "0.0", "--min-size", "0"]
    exported, eager = tmp_path / "exported", tmp_path / "eager"
    done = _tool("infer.py", "--backend", "onnxruntime", str(file), *common, "--out", str(exported))
    assert done.returncode == 0, done.stderr
    done = _tool("infer.py", spec, ckpt, *common, "--out", str(eager), "--classes", CLASSES)
    assert done.returncode == 0, done.stderr
    got = json.loads((exported / "a.json").read_text())
    want = json.loads((eager / "a.json").read_text())
    if name == "classifier":
        assert [t["class"] for t in got["topk"]] == [t["class"] for t in want["topk"]]
        for g, w in zip(got["topk"], want["topk"]):
            assert g["score"] == pytest.approx(w["score"], abs=1e-4)
        drawn = [Image.open(d / "a.png") for d in (exported, eager)]
        assert drawn[0].tobytes() == drawn[1].tobytes()  # the same top-k lines drawn
    else:
        _same_detections(got["detections"], want["detections"])
