"""tools/browse_dataset.py writes annotated PNGs after the pipeline."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anchorage.core.cli import run_tool

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import browse_dataset  # noqa: E402


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("cache"))


def _args(spec: str, cache: str, out: Path) -> list[str]:
    return [
        str(ROOT / "specs" / "_data" / spec), "--out", str(out), "--n", "3",
        "--set", "data.train.dataset.num_images=4", "--set", f"data.train.dataset.root={cache}",
    ]  # fmt: skip


@pytest.mark.parametrize("spec", ["shapes_instance.yaml", "shapes_semantic.yaml"])
def test_writes_pngs_with_drawings(spec, cache, tmp_path, capsys):
    assert run_tool(browse_dataset.main, _args(spec, cache, tmp_path)) == 0
    files = sorted(tmp_path.glob("*.png"))
    assert [f.name for f in files] == ["0000_id1.png", "0001_id2.png", "0002_id3.png"]
    assert "wrote 3 images" in capsys.readouterr().out
    drawn = np.asarray(Image.open(files[0]))
    assert drawn.shape == (384, 384, 3) and drawn.dtype == np.uint8  # enlarged 3x, as infer
    own = tmp_path / "own"
    assert run_tool(browse_dataset.main, [*_args(spec, cache, own), "--min-size", "0"]) == 0
    assert np.asarray(Image.open(own / files[0].name)).shape == (128, 128, 3)
    raw = tmp_path / "raw"
    run_tool(browse_dataset.main, [*_args(spec, cache, raw), "--no-transforms"])
    assert (np.asarray(Image.open(raw / files[0].name)) != drawn).any()  # drawings differ


def test_render_marks_crowd_and_rescales_normalised_images():
    image = torch.randn(3, 20, 30)  # normalised: outside 0..1
    target = {
        "boxes": torch.tensor([[2.0, 2.0, 12.0, 12.0]]),
        "labels": torch.tensor([1]),
        "iscrowd": torch.tensor([1]),
    }
    out = browse_dataset.render(image, target, ["cell"])
    assert out.dtype == torch.uint8 and out.shape == (3, 20, 30)
    assert tuple(out[:, 2, 5].tolist()) == browse_dataset.colour(1)  # box outline colour


def test_user_error_exits_2(cache, tmp_path, capsys):
    status = run_tool(
        browse_dataset.main,
        [
            *_args("shapes_detection.yaml", cache, tmp_path),
            "--split",
            "test",
            "--set",
            "data.test.dataset.split=x",
        ],
    )
    assert status == 2 and "data.test.dataset.split" in capsys.readouterr().err


def test_default_min_size_is_the_drawings_legible_size():
    from anchorage.core.engine.visualize import LEGIBLE_SIZE

    assert browse_dataset.LEGIBLE_SIZE == LEGIBLE_SIZE
    assert browse_dataset.SPLITS == __import__("anchorage.core.data", fromlist=["SPLITS"]).SPLITS
