"""coco on untrusted JSON: paths outside img_dir and fields of the wrong type.

Reliability battery cases 5 and 8 (see ``benchmarks/results/reliability_battery.md``).
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from anchorage.core.build import build_component
from anchorage.core.errors import DataError
from anchorage.plugins.datasets.coco import SAMPLE_DIR

SAMPLE = json.loads((SAMPLE_DIR / "coco.json").read_text())


def dataset(tmp_path: Path, data: dict, **cfg):
    ann = tmp_path / "ann" / "c.json"
    ann.parent.mkdir(exist_ok=True)
    if not (tmp_path / "ann" / "images").exists():
        shutil.copytree(SAMPLE_DIR / "images", tmp_path / "ann" / "images")
    ann.write_text(json.dumps(data))
    return build_component("dataset", {"type": "coco", "ann_file": str(ann), **cfg})


def with_file_name(name: str) -> dict:
    data = copy.deepcopy(SAMPLE)
    data["images"][1]["file_name"] = name
    return data


@pytest.mark.parametrize("name", ["../outside.png", "images/../../outside.png", "/etc/hostname"])
def test_file_name_outside_img_dir_is_refused(tmp_path: Path, name: str) -> None:
    # before: ../../ok.png was loaded and /etc/hostname opened
    shutil.copy(SAMPLE_DIR / "images" / "b.png", tmp_path / "outside.png")
    with pytest.raises(DataError) as info:
        dataset(tmp_path, with_file_name(name))
    message = str(info.value)
    assert f"c.json: image 2: file_name {name!r} leads outside img_dir" in message
    assert "allow_outside_img_dir" in message


def test_outside_paths_are_an_explicit_option(tmp_path: Path) -> None:
    shutil.copy(SAMPLE_DIR / "images" / "b.png", tmp_path / "outside.png")
    ds = dataset(tmp_path, with_file_name("../outside.png"), allow_outside_img_dir=True)
    image, _ = ds[1]
    assert image.shape == (3, 24, 32)


def test_dot_dot_that_stays_inside_and_symlinks_are_fine(tmp_path: Path) -> None:
    ds = dataset(tmp_path, with_file_name("images/../images/b.png"))
    assert ds[1][0].shape == (3, 24, 32)
    (tmp_path / "ann" / "linked").symlink_to(tmp_path / "ann" / "images")
    ds = dataset(tmp_path, with_file_name("linked/b.png"))
    assert ds[1][0].shape == (3, 24, 32)


def broken(section: str, index: int, key: str, value) -> dict:
    data = copy.deepcopy(SAMPLE)
    data[section][index][key] = value
    return data


@pytest.mark.parametrize(
    ("section", "index", "key", "value", "expected"),
    [
        ("images", 0, "height", "abc", "image 1: height: expected a positive integer, got 'abc'"),
        ("images", 0, "width", 0, "image 1: width: expected a positive integer, got 0"),
        ("images", 1, "id", [2], "image: id: expected an integer or string id, got [2] (list)"),
        ("images", 0, "file_name", 7, "image 1: file_name: expected a string, got 7 (int)"),
        ("annotations", 0, "iscrowd", "yes", "annotation 1: iscrowd: expected 0 or 1, got 'yes'"),
        ("annotations", 1, "image_id", [1], "annotation 2: image_id: expected an integer or str"),
        ("annotations", 0, "category_id", {"a": 1}, "annotation 1: category_id: expected"),
        ("annotations", 0, "area", "big", "annotation 1: area: expected a number, got 'big'"),
        ("annotations", 0, "segmentation", "x", "annotation 1: segmentation: expected a polygon"),
        ("annotations", 0, "id", None, "annotation: id: expected an integer or string id"),
        ("categories", 0, "id", [3], "category: id: expected an integer or string id, got [3]"),
    ],
)
def test_field_types_are_checked(tmp_path, section, index, key, value, expected) -> None:
    # before: ValueError / TypeError tracebacks (int('abc'), unhashable list ids)
    with pytest.raises(DataError) as info:
        dataset(tmp_path, broken(section, index, key, value))
    assert "c.json: " + expected in str(info.value)
