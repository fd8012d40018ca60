"""Cropping detection boxes into an image folder: ``core/data/crops.py`` and
``tools/crop_dataset.py`` (deterministic, refuses to mix runs, one-line errors)."""

from __future__ import annotations

import hashlib
import json
import runpy
from pathlib import Path

import torch

from anchorage.core.cli import run_tool
from anchorage.core.data.crops import crop_box, crop_dataset
from anchorage.core.spec import load_spec
from anchorage.plugins.datasets.voc import SAMPLE_VOC

ROOT = Path(__file__).resolve().parents[3]


def voc_spec(tmp_path: Path) -> Path:
    path = tmp_path / "voc.yaml"
    path.write_text(
        f"data:\n  test:\n    dataset: {{type: voc, root: {SAMPLE_VOC}, split: test, "
        "classes: [cell, dot]}\n"
    )
    return path


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.png"))
    }


def test_crop_box_adds_the_margin_and_clips() -> None:
    image = torch.zeros(3, 20, 30)
    crop, window = crop_box(image, (10, 5, 20, 15), 0.1)
    assert window == (9, 4, 21, 16) and crop.shape == (3, 12, 12)
    _, window = crop_box(image, (0, 0, 30, 20), 0.5)
    assert window == (0, 0, 30, 20)


def test_crops_are_deterministic_and_skip_difficult_boxes(tmp_path: Path) -> None:
    spec = load_spec(voc_spec(tmp_path))
    summary = crop_dataset(spec, tmp_path / "a", splits=("test",))
    crop_dataset(spec, tmp_path / "b", splits=("test",))
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != {}
    row = summary["splits"]["test"]
    assert row["crops"] == {"cell": 1, "dot": 0} and row["skipped"] == {"crowd": 1, "small": 0}
    assert (tmp_path / "a" / "test" / "dot").is_dir()  # every class has its folder
    saved = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert saved["class_names"] == ["cell", "dot"]


def tool(*argv: str) -> int:
    main = runpy.run_path(str(ROOT / "tools" / "crop_dataset.py"))["main"]
    return run_tool(main, list(argv))


def test_tool_prints_a_summary_and_refuses_to_mix_runs(tmp_path: Path, capsys) -> None:
    spec, out = str(voc_spec(tmp_path)), str(tmp_path / "cells")
    assert tool(spec, "--out", out, "--splits", "test", "--no-progress") == 0
    printed = capsys.readouterr().out
    assert "split" in printed and "cell" in printed and "wrote" in printed
    assert tool(spec, "--out", out, "--splits", "test") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--overwrite" in err and err.count("\n") == 1
    assert tool(spec, "--out", out, "--splits", "test", "--overwrite", "--no-progress") == 0
    assert tool(spec, "--out", out, "--splits", "train") == 2  # the spec has no train split
    assert "no data split" in capsys.readouterr().err
