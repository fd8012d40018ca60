"""tools/export.py and tools/infer.py --backend: one export each way, the one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[2]
SPEC = str(ROOT / "specs" / "tiny_ssd_shapes.yaml")


def _tool(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / name), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from anchorage.core import build_model, load_spec
    from anchorage.core.checkpoint import save_checkpoint

    torch.manual_seed(0)
    spec = load_spec(SPEC)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, {"model": build_model(spec).state_dict(), "spec": spec.to_dict()})
    return path


@pytest.mark.slow
def test_export_then_infer_with_both_backends(checkpoint: Path, tmp_path: Path) -> None:
    from PIL import Image

    noise = torch.randint(0, 256, (100, 90, 3), generator=torch.Generator().manual_seed(0))
    Image.fromarray(noise.to(torch.uint8).numpy()).save(tmp_path / "a.png")  # no exact ties
    outs = {}
    for fmt, suffix, backend in (
        ("onnx", "onnx", "onnxruntime"), ("exported_program", "pt2", "exported_program"),
    ):  # fmt: skip
        file = tmp_path / f"m.{suffix}"
        done = _tool("export.py", SPEC, str(checkpoint), "--format", fmt, "--out", str(file),
                     "--dynamic")  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "wrote" in done.stdout
        pred = tmp_path / backend
        done = _tool("infer.py", "--backend", backend, str(file), str(tmp_path / "a.png"),
                     "--out", str(pred), "--no-progress", "--score-thresh", "0.0")  # fmt: skip
        assert done.returncode == 0, done.stderr
        outs[backend] = json.loads((pred / "a.json").read_text())
    eager = tmp_path / "eager"
    done = _tool("infer.py", SPEC, str(checkpoint), str(tmp_path / "a.png"), "--out", str(eager),
                 "--no-progress", "--score-thresh", "0.0")  # fmt: skip
    assert done.returncode == 0, done.stderr
    want = json.loads((eager / "a.json").read_text())["detections"]
    for got in outs.values():
        assert [d["class"] for d in got["detections"]] == [d["class"] for d in want]
        for g, w in zip(got["detections"], want):
            assert g["bbox"] == pytest.approx(w["bbox"], abs=1e-3)


def test_missing_output_folder_is_one_line(checkpoint: Path, tmp_path: Path) -> None:
    done = _tool("export.py", SPEC, str(checkpoint), "--format", "onnx",
                 "--out", str(tmp_path / "no" / "m.onnx"))  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: --out: folder {tmp_path / 'no'} does not exist"
    ]


def test_spec_checkpoint_mismatch_is_one_line(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    done = _tool("export.py", str(ROOT / "specs" / "yolo_shapes.yaml"), str(checkpoint),
                 "--format", "onnx", "--out", str(out))  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "checkpoint is single_shot / tiny_ssd_base" in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".m.onnx.*"))


@pytest.mark.slow
def test_mask_rcnn_export_then_infer_draws_the_same_masks(tmp_path: Path) -> None:
    """The two-stage path through the tools: a Mask R-CNN exported to ONNX, run by
    infer.py --backend onnxruntime, gives eager infer.py's boxes, classes and masks."""
    from PIL import Image
    from pycocotools import mask as mask_utils

    from anchorage.core import build_model, load_spec
    from anchorage.core.checkpoint import save_checkpoint

    spec_path = str(ROOT / "specs" / "mask_rcnn_r18_fpn_shapes.yaml")
    torch.manual_seed(0)
    spec = load_spec(spec_path)
    ckpt = tmp_path / "mask.pt"
    save_checkpoint(ckpt, {"model": build_model(spec).state_dict(), "spec": spec.to_dict()})
    noise = torch.randint(0, 256, (100, 90, 3), generator=torch.Generator().manual_seed(0))
    Image.fromarray(noise.to(torch.uint8).numpy()).save(tmp_path / "a.png")
    file = tmp_path / "m.onnx"
    done = _tool("export.py", spec_path, str(ckpt), "--format", "onnx", "--out", str(file),
                 "--size", "100,90")  # fmt: skip
    assert done.returncode == 0, done.stderr
    runs = {}
    for name, args in (
        ("onnx", ["--backend", "onnxruntime", str(file)]), ("eager", [spec_path, str(ckpt)]),
    ):  # fmt: skip
        done = _tool("infer.py", *args, str(tmp_path / "a.png"), "--out", str(tmp_path / name),
                     "--no-progress", "--score-thresh", "0.0")  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert (tmp_path / name / "a.png").is_file()
        runs[name] = json.loads((tmp_path / name / "a.json").read_text())["detections"]
    got, want = runs["onnx"], runs["eager"]
    assert len(want) > 0 and [d["class"] for d in got] == [d["class"] for d in want]
    for g, w in zip(got, want):
        assert g["bbox"] == pytest.approx(w["bbox"], abs=1e-3)
        rles = [
            dict(d["segmentation"], counts=d["segmentation"]["counts"].encode()) for d in (g, w)
        ]
        if mask_utils.area(rles[1]) > 0:
            assert mask_utils.iou([rles[0]], [rles[1]], [0])[0, 0] > 0.99
