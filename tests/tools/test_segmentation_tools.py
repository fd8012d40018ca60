"""tools/eval.py and tools/infer.py on a semantic segmentation spec: the model normalises
inside and returns one ``sem_seg`` dict per image, so neither tool needs the data pipeline."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor, to_pil_image

from anchorage.core import Spec
from anchorage.core.cli import run_tool
from anchorage.core.engine import train

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def trained(tmp_path: Path) -> tuple[Path, Path]:
    """(spec file, checkpoint) of a 1-epoch tiny U-Net on shapes with semantic masks."""
    shapes = {"type": "shapes", "image_size": [48, 48], "max_size": 30, "semantic_masks": True,
              "root": str(tmp_path / "cache")}  # fmt: skip
    data = {
        "model": {"type": "unet", "num_classes": 3, "base_channels": 4, "depth": 2},
        "data": {
            "train": {
                "dataset": {**shapes, "split": "train", "num_images": 8},
                "transforms": [{"type": "random_crop", "size": [32, 32]}],
                "batch_size": 4,
            },
            "val": {"dataset": {**shapes, "split": "val", "num_images": 4}, "batch_size": 2},
        },
        "eval": {"split": "val", "metrics": [{"type": "seg_miou"}]},
        "train": {
            "epochs": 1,
            "optimizer": {"type": "adamw", "lr": 0.01},
            "log_images": 0,
            "device": "cpu",
            "progress": False,
        },  # fmt: skip
    }
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    train(Spec.from_dict(data), tmp_path / "work", progress=False)
    return spec, tmp_path / "work" / "last.pt"


def tool(name: str, *argv: str) -> int:
    main = runpy.run_path(str(ROOT / "tools" / f"{name}.py"))["main"]
    return run_tool(main, list(argv))


def test_eval_prints_miou_and_infer_draws_an_overlay(trained, tmp_path: Path, capsys) -> None:
    spec, ckpt = trained
    out = tmp_path / "results.json"
    assert tool("eval", str(spec), str(ckpt), "--out", str(out), "--no-progress") == 0
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "rectangle" in printed
    metrics = json.loads(out.read_text())["metrics"]
    assert 0.0 <= metrics["seg/mIoU"] <= 1.0

    image = tmp_path / "a.png"
    to_pil_image(torch.rand(3, 40, 52)).save(image)
    assert tool("infer", str(spec), str(ckpt), str(image), "--out", str(tmp_path / "p"),
                "--min-size", "0") == 0  # fmt: skip
    with Image.open(tmp_path / "p" / "a.png") as drawn:
        assert pil_to_tensor(drawn.convert("RGB")).shape == (3, 40, 52)
