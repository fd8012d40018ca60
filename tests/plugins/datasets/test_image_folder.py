"""``image_folder``: ImageFolder layout, labels 1..C, the one-line errors, the transforms."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from anchorage.core.build import build_component
from anchorage.core.data import build_transforms
from anchorage.core.errors import DataError
from anchorage.core.spec import load_spec


def make_folder(root: Path, counts: dict[str, int], size: tuple[int, int] = (20, 24)) -> Path:
    """``root/<class>/<i>.png`` with ``counts[class]`` small images each."""
    for k, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            colour = (40 * k + 20, 200 - 30 * i, 90)
            Image.new("RGB", (size[1], size[0]), colour).save(root / name / f"{i}.png")
    return root


def dataset(root: Path, **params):
    return build_component("dataset", {"type": "image_folder", "root": str(root), **params})


def test_labels_follow_sorted_folders_or_the_spec(tmp_path: Path) -> None:
    make_folder(tmp_path, {"wbc": 1, "rbc": 2})
    ds = dataset(tmp_path)
    assert ds.class_names == ["rbc", "wbc"] and ds.labels == [1, 1, 2]
    image, target = ds[0]
    assert image.shape == (3, 20, 24) and image.dtype == torch.float32
    assert target["label"].dtype == torch.int64 and target["label"].shape == ()
    assert target["image_id"] == 1 and target["orig_size"] == (20, 24)
    ordered = dataset(tmp_path, classes=("wbc", "rbc"))
    assert ordered.labels == [2, 2, 1]


def test_split_subfolder(tmp_path: Path) -> None:
    make_folder(tmp_path / "val", {"a": 1, "b": 1})
    assert len(dataset(tmp_path, split="val")) == 2


def test_errors_name_the_folder_or_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="image folder not found"):
        dataset(tmp_path / "missing")
    make_folder(tmp_path, {"a": 1, "b": 1})
    (tmp_path / "c").mkdir()
    with pytest.raises(DataError, match=r"/c: class folder without images") as err:
        dataset(tmp_path)
    assert "\n" not in str(err.value)
    (tmp_path / "c").rmdir()
    with pytest.raises(DataError, match=r"not the spec's classes .* missing \['x'\]"):
        dataset(tmp_path, classes=("a", "b", "x"))
    (tmp_path / "b" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"b/bad.png: cannot read image"):
        dataset(tmp_path)


def test_truncated_pixels_fail_or_skip_when_read(tmp_path: Path) -> None:
    make_folder(tmp_path, {"a": 2}, size=(64, 64))
    path = tmp_path / "a" / "1.png"
    path.write_bytes(path.read_bytes()[:80])  # the header survives, the pixels do not
    with pytest.raises(DataError, match=r"a/1.png: cannot read image"):
        dataset(tmp_path)[1]
    assert dataset(tmp_path, max_bad_samples=1)[1] is None


def test_notes_augmentations_keep_the_label(tmp_path: Path) -> None:
    make_folder(tmp_path / "images", {"a": 1})
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(
        f"""
data:
  train:
    dataset: {{type: image_folder, root: {tmp_path / "images"}}}
    transforms:
      - {{type: random_resized_crop, size: [16, 16]}}
      - {{type: horizontal_flip}}
      - {{type: color_jitter, brightness: 0.4}}
      - {{type: center_crop, size: [12, 12]}}
"""
    )
    pipeline = build_transforms(load_spec(spec_file).section("data").train.transforms)
    tmp_path = tmp_path / "images"
    image, target = pipeline(*dataset(tmp_path)[0])
    assert image.shape == (3, 12, 12) and int(target["label"]) == 1
