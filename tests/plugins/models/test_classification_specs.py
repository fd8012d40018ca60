"""The classification specs train 2 steps through tools/train.py (on tiny local data), the
fine-tuning recipe (a detector's backbone, the head re-initialised, 10x lr on it), and the
image-folder errors as one-line exits with status 2."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
import torch
from PIL import Image

from anchorage.core import build_model, load_spec, save_checkpoint
from anchorage.core.cli import run_tool
from anchorage.core.engine.finetune import load_matching
from anchorage.core.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[3]
CLASSES = ("RBC", "WBC", "Platelets")
TWO_STEPS = ["--no-progress", "--set", "train.max_iters=2", "--set", "train.epochs=1"]


def cells(root: Path, per_class: int = 2) -> Path:
    """``root/{train,val,test}/<class>/<i>.png``: tiny crops of three colours."""
    for split in ("train", "val", "test"):
        for k, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                colour = (80 * k + 40, 60 + 50 * i, 200 - 80 * k)
                Image.new("RGB", (20 + 4 * k, 18), colour).save(root / split / name / f"{i}.png")
    return root


def data_overrides(root: Path) -> list[str]:
    out = []
    for split in ("train", "val", "test"):
        out += ["--set", f"data.{split}.dataset.root={root}", "--set", f"data.{split}.batch_size=3"]
    return out


def train(*argv: str) -> int:
    main = runpy.run_path(str(ROOT / "tools" / "train.py"))["main"]
    return run_tool(main, list(argv))


@pytest.fixture
def cell_folder(tmp_path: Path) -> Path:
    return cells(tmp_path / "cells")


def test_resnet18_cells_trains_two_steps(cell_folder: Path, tmp_path: Path, capsys) -> None:
    work = tmp_path / "run"
    code = train("specs/resnet18_cells.yaml", "--work-dir", str(work), *TWO_STEPS,
                 *data_overrides(cell_folder))  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "classification: top1" in out and "Platelets" in out
    assert (work / "pictures" / "confusion_matrix.png").is_file()
    assert (work / "predictions" / "0.png").is_file()
    rows = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert any("cls/top1" in r for r in rows)
    evaluate = runpy.run_path(str(ROOT / "tools" / "eval.py"))["main"]
    pictures = tmp_path / "pictures"
    code = run_tool(evaluate, ["specs/resnet18_cells.yaml", str(work / "last.pt"), "--split",
                               "test", "--pictures", str(pictures), "--no-progress",
                               *data_overrides(cell_folder)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and f"wrote {pictures / 'confusion_matrix.png'}" in out, out
    assert '"cls/top1"' in out


def test_finetune_from_a_detector_backbone(cell_folder: Path, tmp_path: Path, capsys) -> None:
    detector = build_model(load_spec("specs/faster_rcnn_r18_fpn_bccd.yaml"))
    checkpoint = save_checkpoint(tmp_path / "detector.pt", {"model": detector.state_dict()})
    work = tmp_path / "ft"
    load = ["--set", f"train.load_from={checkpoint}"]
    code = train("specs/resnet18_finetune_cells.yaml", "--work-dir", str(work), *TWO_STEPS,
                 *load, *data_overrides(cell_folder))  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    line = next(x for x in out.splitlines() if x.startswith("load_from"))
    assert "re-initialised by load_exclude (2): head.mlp.*.{weight,bias}" in line
    assert "backbone.body" not in line.partition("not in the checkpoint")[2]
    first = json.loads((work / "metrics.jsonl").read_text().splitlines()[0])
    assert first["lr_group1"] == pytest.approx(10 * first["lr_group0"])  # the head: 10x


def test_load_exclude_keeps_the_fresh_head_and_refuses_typos(tmp_path: Path) -> None:
    spec = load_spec("specs/resnet18_cells.yaml")
    trained = build_model(spec)
    with torch.no_grad():
        trained.head.mlp[-1].bias.fill_(3.0)
    path = save_checkpoint(tmp_path / "c.pt", {"model": trained.state_dict()})
    fresh = build_model(spec)
    report = load_matching(fresh, path, exclude=("^head\\.",))
    assert torch.count_nonzero(fresh.head.mlp[-1].bias) == 0  # re-initialised, not loaded
    assert torch.equal(fresh.backbone.body.conv1.weight, trained.backbone.body.conv1.weight)
    assert report.loaded == report.total - 2
    with pytest.raises(CheckpointError, match=r"load_exclude: pattern\(s\) \['\^haed'\]"):
        load_matching(fresh, path, exclude=("^haed",))


def test_localizer_spec_trains_two_steps(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ANCHORAGE_CACHE", str(tmp_path / "cache"))
    sets = []
    for split in ("train", "val", "test"):
        sets += ["--set", f"data.{split}.dataset.num_images=4",
                 "--set", f"data.{split}.batch_size=2"]  # fmt: skip
    code = train("specs/localizer_r18_shapes.yaml", "--work-dir", str(tmp_path / "loc"),
                 *TWO_STEPS, *sets)  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "localization (4 images): mIoU" in out and "classification: top1" in out


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("classes", "model.num_classes: 2, but data.train.dataset"),
        ("empty", "WBC: class folder without images"),
        ("unreadable", "bad.png: cannot read image"),
    ],
)
def test_image_folder_errors_exit_2_in_one_line(
    cell_folder: Path, tmp_path: Path, capsys, damage: str, message: str
) -> None:
    extra = []
    if damage == "classes":
        extra = ["--set", "model.num_classes=2"]
    elif damage == "empty":
        for f in (cell_folder / "train" / "WBC").iterdir():
            f.unlink()
    else:
        (cell_folder / "val" / "RBC" / "bad.png").write_text("not a picture")
    code = train("specs/resnet18_cells.yaml", "--work-dir", str(tmp_path / "bad"), *TWO_STEPS,
                 *data_overrides(cell_folder), *extra)  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert "Traceback" not in err
