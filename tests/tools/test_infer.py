"""tools/infer.py: PNGs with boxes + captions; class names from the spec or --classes."""

from __future__ import annotations

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
def trained(toys, tmp_path: Path) -> tuple[Path, Path]:
    data = toys.toy_spec(epochs=1, log_images=0, eval_interval=0)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    train(Spec.from_dict(data), tmp_path / "work", progress=False)
    return spec, tmp_path / "work" / "last.pt"


def tool(*argv: str) -> int:
    main = runpy.run_path(str(ROOT / "tools" / "infer.py"))["main"]
    return run_tool(main, list(argv))


def image_file(path: Path, size: int = 40) -> Path:
    to_pil_image(torch.full((3, size, size + 8), 30, dtype=torch.uint8)).save(path)
    return path


def decode_image(path: str) -> torch.Tensor:
    with Image.open(path) as img:
        return pil_to_tensor(img.convert("RGB"))


def test_writes_pngs_with_boxes(trained, tmp_path: Path, capsys) -> None:
    spec, ckpt = trained
    a = image_file(tmp_path / "a.png")
    b = image_file(tmp_path / "sub_b.png", size=32)
    out = tmp_path / "preds"
    assert tool(str(spec), str(ckpt), str(a), str(b), "--out", str(out), "--score-thresh", "0") == 0
    written = capsys.readouterr().out.split()
    assert [Path(p).name for p in written] == ["a.png", "sub_b.png"]
    drawn = decode_image(str(out / "a.png"))
    assert drawn.shape == (3, 400, 480)  # enlarged 10x: 384 / 40 rounds up to 10
    assert (drawn != 30).any(), "no box was drawn"
    assert tool(str(spec), str(ckpt), str(a), "--out", str(tmp_path / "own"),
                "--score-thresh", "0", "--min-size", "0") == 0  # fmt: skip
    assert decode_image(str(tmp_path / "own" / "a.png")).shape == (3, 40, 48)
    # a threshold above every score draws nothing
    assert tool(str(spec), str(ckpt), str(a), "--out", str(tmp_path / "none"),
                "--score-thresh", "1.01") == 0  # fmt: skip
    assert (decode_image(str(tmp_path / "none" / "a.png")) == 30).all()


def test_classes_option_and_bad_image(trained, tmp_path: Path, capsys) -> None:
    spec, ckpt = trained
    a = image_file(tmp_path / "a.png")
    out = tmp_path / "preds"
    assert tool(str(spec), str(ckpt), str(a), "--out", str(out), "--classes", "x,y") == 0
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert tool(str(spec), str(ckpt), str(bad), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "bad.png: cannot read image" in err and "Traceback" not in err
