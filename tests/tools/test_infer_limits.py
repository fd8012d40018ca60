"""tools/infer.py on odd images and outputs: bounded memory, one-line errors.

Reliability battery cases 6 and 7 (see ``benchmarks/results/reliability_battery.md``).
"""

from __future__ import annotations

import runpy
import time
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from torchvision.transforms.v2.functional import to_pil_image

from anchorage.core import Spec
from anchorage.core.cli import run_tool
from anchorage.core.engine import train
from anchorage.core.engine.pictures import MAX_DRAWN_SIDE, enlargement
from anchorage.core.engine.visualize import draw_prediction

ROOT = Path(__file__).resolve().parents[2]


def tool(*argv: str) -> int:
    main = runpy.run_path(str(ROOT / "tools" / "infer.py"))["main"]
    return run_tool(main, list(argv))


def detection(n: int = 1) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor([[0.0, 0.0, 1.0, 3.0]] * n),
        "scores": torch.ones(n),
        "labels": torch.ones(n, dtype=torch.int64),
    }


def test_enlargement_is_capped_by_the_long_side() -> None:
    # before: a 1x5000 image was drawn at 384x1,920,000 (63 s, 10 GB)
    assert enlargement((1, 5000), 384) == 1
    assert enlargement((2, 600), 384) == MAX_DRAWN_SIDE // 600 == 6
    assert enlargement((40, 48), 384) == 10  # the legible enlargement is unchanged
    assert enlargement((1000, 1000), 384) == 1
    start = time.perf_counter()
    drawn = draw_prediction(torch.rand(3, 1, 5000), detection(), ["a"], 0.0, 384)
    assert drawn.shape == (3, 1, 5000) and time.perf_counter() - start < 5


@pytest.fixture
def trained(toys, tmp_path: Path) -> tuple[Path, Path]:
    data = toys.toy_spec(epochs=1, log_images=0, eval_interval=0)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    train(Spec.from_dict(data), tmp_path / "work", progress=False)
    return spec, tmp_path / "work" / "last.pt"


@pytest.mark.slow
def test_thin_and_absurd_images(trained, tmp_path: Path, capsys) -> None:
    spec, ckpt = trained
    thin = tmp_path / "thin.png"
    to_pil_image(torch.full((3, 2, 600), 30, dtype=torch.uint8)).save(thin)
    out = tmp_path / "preds"
    assert tool(str(spec), str(ckpt), str(thin), "--out", str(out), "--score-thresh", "0") == 0
    with Image.open(out / "thin.png") as img:
        assert img.size == (3600, 12)  # enlarged 6x (long side capped at 4096), not 192x
    capsys.readouterr()
    absurd = tmp_path / "absurd.png"
    to_pil_image(torch.zeros((3, 1, 5000), dtype=torch.uint8)).save(absurd)
    start = time.perf_counter()
    assert tool(str(spec), str(ckpt), str(absurd), "--out", str(out)) == 2
    assert time.perf_counter() - start < 10
    err = capsys.readouterr().err
    assert f"{absurd}: image is 1x5000 pixels" in err and "5000:1" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_out_that_is_a_file_fails_before_running(trained, tmp_path: Path, capsys) -> None:
    # before: FileExistsError traceback
    spec, ckpt = trained
    image = tmp_path / "a.png"
    to_pil_image(torch.zeros((3, 8, 8), dtype=torch.uint8)).save(image)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert tool(str(spec), str(ckpt), str(image), "--out", str(blocker)) == 2
    assert f"--out {blocker} is a file" in capsys.readouterr().err
    assert tool(str(spec), str(ckpt), str(image), "--out", str(blocker / "sub")) == 2
    assert f"cannot be created: {blocker} is a file" in capsys.readouterr().err
