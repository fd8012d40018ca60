"""Annotation validation at load: every case, both policies, max_bad_samples, BCCD quirks."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anchorage.core.build import build_component
from anchorage.core.data import collate_detection
from anchorage.core.errors import DataError

BCCD = (
    Path(__file__).resolve().parents[3] / ".." / "shared" / "datasets" / "bccd" / "BCCD"
).resolve()


def _coco(tmp_path: Path, anns: list[dict], n_images: int = 3, **extra) -> str:
    rng = np.random.default_rng(0)
    images = []
    for i in range(n_images):
        name = f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / name)
        images.append({"id": i + 1, "file_name": name, "height": 40, "width": 50})
    data = {
        "images": images + extra.get("more_images", []),
        "annotations": [{"id": k + 1, "iscrowd": 0, "area": 10.0, **a} for k, a in enumerate(anns)],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return str(path)


def _load(path: str, **params):
    return build_component("dataset", {"type": "coco", "ann_file": path, **params})


GOOD = {"image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10]}


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ({"image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 10]}, "degenerate_box"),
        ({"image_id": 1, "category_id": 1, "bbox": [5, 5, -3, 4]}, "degenerate_box"),
        ({"image_id": 1, "category_id": 1, "bbox": [5, None, 3, 4]}, "nan_box"),
        ({"image_id": 1, "category_id": 1, "bbox": [60, 45, 3, 4]}, "outside_image"),
        (
            {"image_id": 1, "category_id": 1, "bbox": [5, 5, 9, 9], "segmentation": [[1, 2, 3, 4]]},
            "bad_polygon",
        ),
    ],
)
def test_box_problems_dropped_or_strict(tmp_path, caplog, bad, problem):
    path = _coco(tmp_path, [GOOD, bad])
    with caplog.at_level(logging.WARNING, logger="anchorage.data"):
        ds = _load(path)
    assert ds.report.counts == {problem: 1}
    assert len(ds) == 3 and len(ds.records[0].labels) == 1  # the good box stays
    assert "image id 1, annotation 2" in ds.report.examples[problem][0]
    assert sum(problem in r.message for r in caplog.records) == 1  # one summary
    with pytest.raises(DataError, match=problem):
        _load(path, policy="strict")


def test_partly_outside_box_is_clamped(tmp_path):
    ds = _load(_coco(tmp_path, [{"image_id": 2, "category_id": 2, "bbox": [-5, 30, 20, 20]}]))
    assert ds.report.counts == {"clamped_box": 1}
    _, target = ds[1]
    assert target["boxes"].tolist() == [[0.0, 30.0, 15.0, 40.0]]
    assert target["labels"].tolist() == [2]
    _load(
        _coco(tmp_path, [{"image_id": 2, "category_id": 2, "bbox": [-5, 30, 20, 20]}]),
        policy="strict",
    )  # a clamp is a fix, not an error


def test_polygon_part_with_too_few_points_is_dropped_not_the_annotation(tmp_path):
    segm = [[5, 5, 15, 5, 15, 15], [1, 1, 2, 2]]
    ds = _load(_coco(tmp_path, [{**GOOD, "segmentation": segm}]), masks=True)
    assert ds.report.counts == {"dropped_polygon_part": 1}
    assert ds[0][1]["masks"].shape == (1, 40, 50)


@pytest.mark.parametrize(
    ("anns", "more_images", "problem", "match"),
    [
        ([{**GOOD, "category_id": 7}], [], "unknown_category", "category 7 is not a known class"),
        ([GOOD, {**GOOD, "id": 1}], [], "duplicate_annotation_id", "duplicate annotation id 1"),
        (
            [GOOD],
            [{"id": 2, "file_name": "x.png", "height": 40, "width": 50}],
            "duplicate_image_id",
            "duplicate image id 2",
        ),
        (
            [GOOD],
            [{"id": 9, "file_name": "missing.png", "height": 40, "width": 50}],
            "missing_file",
            "missing.png",
        ),
        ([{**GOOD, "image_id": 42}], [], "unknown_image", "no image has id 42"),
    ],
)
def test_bad_samples_raise_or_skip_under_limit(tmp_path, anns, more_images, problem, match):
    if problem == "duplicate_annotation_id":
        path = tmp_path / "ann.json"
        _coco(tmp_path, [])
        data = json.loads(path.read_text())
        data["annotations"] = [{"id": 1, "iscrowd": 0, **a} for a in (GOOD, GOOD)]
        path.write_text(json.dumps(data))
        path = str(path)
    else:
        path = _coco(tmp_path, anns, more_images=more_images)
    with pytest.raises(DataError, match=match) as info:
        _load(path)
    assert "ann.json" in str(info.value) and "max_bad_samples=0" in str(info.value)
    ds = _load(path, max_bad_samples=1)
    assert ds.report.counts[problem] == 1 and ds.report.bad_samples == 1


def test_images_without_annotations_stay(tmp_path):
    ds = _load(_coco(tmp_path, [GOOD]))
    assert len(ds) == 3
    _, target = ds[2]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)


def test_annotation_file_not_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"images": [')
    with pytest.raises(DataError, match=r"bad\.json: not valid JSON \(line 1"):
        _load(str(path))


def test_truncated_and_corrupt_images(tmp_path):
    path = _coco(tmp_path, [GOOD], n_images=2)
    jpeg = tmp_path / "0.jpg"
    Image.fromarray(np.full((40, 50, 3), 128, np.uint8)).save(jpeg, quality=90)
    jpeg.write_bytes(jpeg.read_bytes()[:200])  # truncated
    (tmp_path / "1.png").write_bytes(b"not an image at all")
    data = json.loads(Path(path).read_text())
    data["images"][0]["file_name"] = "0.jpg"
    Path(path).write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"0\.jpg.*image id 1"):
        _load(path)[0]
    ds = _load(path, max_bad_samples=1)
    assert ds[0] is None  # skipped, counted
    assert ds.report.counts["unreadable_image"] == 1
    with pytest.raises(DataError, match=r"1\.png.*image id 2"):
        ds[1]  # the limit is spent
    assert collate_detection([None]) == ([], [])


@pytest.mark.skipif(not BCCD.is_dir(), reason="BCCD not available at ../shared/datasets")
def test_bccd_degenerate_boxes_are_a_real_case():
    found = {}
    for split in ("train", "val", "test"):
        ds = build_component(
            "dataset",
            {
                "type": "voc",
                "root": str(BCCD),
                "split": split,
                "classes": ("RBC", "WBC", "Platelets"),
            },
        )
        found.update({e.split(".")[0]: split for e in ds.report.examples.get("degenerate_box", [])})
        for r in ds.records:
            assert (r.boxes[:, 2:] > r.boxes[:, :2]).all()
    assert set(found) == {"BloodImage_00338", "BloodImage_00343"}
    with pytest.raises(DataError, match="(?s)strict.*degenerate_box"):
        build_component(
            "dataset",
            {
                "type": "voc",
                "root": str(BCCD),
                "split": found["BloodImage_00338"],
                "classes": ("RBC", "WBC", "Platelets"),
                "policy": "strict",
            },
        )


def test_duplicate_category_id_is_an_error(tmp_path):
    path = Path(_coco(tmp_path, [GOOD]))
    data = json.loads(path.read_text())
    data["categories"].append({"id": 2, "name": "again"})
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="duplicate category id 2"):
        _load(str(path))


def test_a_duplicate_image_id_is_named_before_the_annotations_it_orphans(tmp_path):
    # x.png was meant to be image 4; its id duplicates image 3, its annotation names 4
    dup = [{"id": 3, "file_name": "x.png", "height": 40, "width": 50}]
    path = _coco(tmp_path, [{**GOOD, "image_id": 4}], more_images=dup)
    with pytest.raises(DataError, match=r"ann\.json: duplicate image id 3 \(x\.png\) \(bad"):
        _load(path)
    ds = _load(path, max_bad_samples=2)
    assert ds.report.counts == {"duplicate_image_id": 1, "unknown_image": 1}


def test_the_report_of_a_file_read_twice_is_logged_once(tmp_path, caplog):
    path = _coco(tmp_path, [GOOD, {**GOOD, "id": 2, "bbox": [10, 10, 0, 5]}])
    with caplog.at_level(logging.INFO, logger="anchorage.data"):
        first, second = _load(path), _load(path)
    assert first.report.counts == second.report.counts != {}
    assert sum("annotation problems" in r.message for r in caplog.records) == 1
