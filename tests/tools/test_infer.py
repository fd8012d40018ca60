"""tools/infer.py: PNGs with boxes + captions; class names from the spec or --classes."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor, to_pil_image

from anchorage.core import AnchorageError, Spec
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
    # a threshold above every score draws no box, but says so on the picture and console
    capsys.readouterr()
    assert tool(str(spec), str(ckpt), str(a), "--out", str(tmp_path / "none"),
                "--score-thresh", "1.01") == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "a.png: 0 of 1 detections \u2265 1.01; best 0." in err
    none = decode_image(str(tmp_path / "none" / "a.png"))
    assert (none[:, 40:] == 30).all(), "a box was drawn below the note"
    assert (none[:, :15] != 30).any(), "no note on the picture"


def test_json_beside_each_png_folders_and_globs(trained, tmp_path: Path, capsys) -> None:
    spec, ckpt = trained
    folder = tmp_path / "imgs"
    folder.mkdir()
    image_file(folder / "a.png")
    image_file(folder / "b.png")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "preds"
    assert tool(str(spec), str(ckpt), str(folder), "--out", str(out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a.png", "b.json", "b.png"]
    info = json.loads((out / "a.json").read_text())
    assert (info["width"], info["height"], info["score_thresh"]) == (48, 40, 0.3)
    (det,) = info["detections"]  # the toy predicts one box per image, kept under the threshold
    assert set(det) == {"bbox", "score", "label", "class"}
    assert det["class"] == ["square", "disc"][det["label"] - 1] and len(det["bbox"]) == 4
    glob_out = tmp_path / "glob"
    assert tool(str(spec), str(ckpt), str(folder / "b*.png"), "--out", str(glob_out)) == 0
    assert sorted(p.name for p in glob_out.iterdir()) == ["b.json", "b.png"]
    assert tool(str(spec), str(ckpt), str(folder / "z*.png"), "--out", str(glob_out)) == 2
    assert "matches no file" in capsys.readouterr().err


def test_ground_truth_is_drawn_beside(trained, tmp_path: Path) -> None:
    from anchorage.core.engine.visualize import palette

    spec, ckpt = trained
    a = image_file(tmp_path / "a.png")
    coco = {
        "images": [{"id": 7, "file_name": "sub/a.png", "height": 40, "width": 48}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "bbox": [4, 4, 10, 10], "iscrowd": 0}
        ],
        "categories": [{"id": 3, "name": "square"}, {"id": 5, "name": "disc"}],
    }
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(coco))
    out = tmp_path / "preds"
    assert tool(str(spec), str(ckpt), str(a), "--out", str(out), "--ground-truth", str(gt),
                "--min-size", "0") == 0  # fmt: skip
    drawn = decode_image(str(out / "a.png"))
    assert drawn.shape == (3, 40, 48 * 2 + 4)  # ground truth | gap | prediction
    square = palette(3)[1]  # the colour of class 1 in the prediction drawings
    assert tuple(drawn[:, 14, 4].tolist()) == square  # the gt box's left edge


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


def test_help_shows_the_defaults() -> None:
    import subprocess
    import sys

    from anchorage.core.engine.visualize import LEGIBLE_SIZE

    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "infer.py"), "--help"], capture_output=True, text=True
    )
    text = " ".join(done.stdout.split())
    assert "(default 0.3)" in text and f"(default {LEGIBLE_SIZE};" in text


def test_batches_and_drawing_threads_change_nothing_but_speed(trained, tmp_path: Path) -> None:
    """Sizes 40, 40, 40, 32, 40 (two runs of one size), two images with one stem: every
    setting writes the same PNGs and JSONs, in the order given."""
    from anchorage.core.engine.predict import predict_images, same_size_batches

    spec, ckpt = trained
    (tmp_path / "x").mkdir()
    sizes = [40, 40, 40, 32, 40]
    paths = [image_file(tmp_path / f"{i}.png", s) for i, s in enumerate(sizes[:-1])]
    paths.append(image_file(tmp_path / "x" / "0.png", sizes[-1]))  # stem 0 again
    hw = [(s, s + 8) for s in sizes]
    assert list(same_size_batches(paths, hw, 2)) == [[0, 1], [2], [3], [4]]
    runs = {}
    for batch_size, workers in ((1, 0), (2, 0), (8, 3)):
        out = tmp_path / f"out_{batch_size}_{workers}"
        written = predict_images(
            load_spec_file(spec), ckpt, paths, out, score_thresh=0.0,
            batch_size=batch_size, workers=workers,
        )  # fmt: skip
        assert [p.name for p in written] == ["0.png", "1.png", "2.png", "3.png", "0_1.png"]
        runs[batch_size, workers] = [
            (decode_image(str(p)), json.loads(p.with_suffix(".json").read_text())) for p in written
        ]
    base = runs[1, 0]
    for other in (runs[2, 0], runs[8, 3]):
        for (png_a, json_a), (png_b, json_b) in zip(base, other):
            assert torch.equal(png_a, png_b)
            for da, db in zip(json_a["detections"], json_b["detections"]):
                assert da["label"] == db["label"]
                assert da["score"] == pytest.approx(db["score"], abs=1e-5)
                assert da["bbox"] == pytest.approx(db["bbox"], abs=1e-3)


def test_a_writer_error_stops_the_run_with_its_message(trained, tmp_path: Path) -> None:
    from anchorage.core.engine.predict import predict_images

    spec, ckpt = trained
    paths = [image_file(tmp_path / f"{i}.png") for i in range(4)]
    out = tmp_path / "out"
    (out / "2.json").mkdir(parents=True)  # the third JSON cannot be written
    with pytest.raises(AnchorageError, match=r"disk full / not writable: .*out/2\.json \("):
        predict_images(load_spec_file(spec), ckpt, paths, out, workers=2)
    assert (out / "0.json").is_file()  # what was written stays


def load_spec_file(path: Path) -> Spec:
    from anchorage.core import load_spec

    return load_spec(path)


def test_a_truncated_image_mid_run_keeps_what_came_before(trained, tmp_path: Path) -> None:
    from anchorage.core import DataError
    from anchorage.core.engine.predict import predict_images

    spec, ckpt = trained
    paths = [image_file(tmp_path / f"{i}.png") for i in range(5)]
    data = paths[3].read_bytes()
    paths[3].write_bytes(data[: len(data) // 2])  # the header reads, the pixels do not
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"3\.png: cannot read image"):
        predict_images(load_spec_file(spec), ckpt, paths, out, batch_size=2, workers=2)
    assert sorted(p.name for p in out.glob("*.json")) == ["0.json", "1.json", "2.json"]
