"""coco and voc loaders on small files: boxes, masks, label mapping, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from anchorage.core.build import build_component
from anchorage.core.errors import DataError
from anchorage.plugins.datasets.coco import SAMPLE_DIR
from anchorage.plugins.datasets.voc import SAMPLE_VOC


def test_coco_boxes_masks_and_label_mapping():
    ds = build_component(
        "dataset",
        {
            "type": "coco",
            "ann_file": str(SAMPLE_DIR / "coco.json"),
            "masks": True,
            "semantic_masks": True,
        },
    )
    assert ds.class_names == ["square", "blob"]  # category ids 3 and 7 in id order
    assert ds.label_to_category == {1: 3, 2: 7}
    image, t = ds[0]
    assert image.shape == (3, 24, 32)
    assert t["boxes"].tolist() == [[5.0, 4.0, 20.0, 14.0], [10.0, 6.0, 26.0, 18.0]]  # xywh->xyxy
    assert t["labels"].tolist() == [1, 2] and t["iscrowd"].tolist() == [0, 0]
    masks = t["masks"]
    assert masks.shape == (2, 24, 32) and masks.dtype == torch.uint8
    rle_mask = np.zeros((24, 32), np.uint8)
    rle_mask[6:18, 10:26] = 1
    assert np.array_equal(masks[1].numpy(), rle_mask)  # from RLE
    ys, xs = torch.nonzero(masks[0], as_tuple=True)  # from a polygon
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == (5, 4, 19, 13)  # pixels inside
    assert t["semantic_mask"][10, 15] == 2 and t["semantic_mask"][5, 6] == 1
    assert t["semantic_mask"][0, 0] == 0
    _, empty = ds[1]
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 24, 32)


def test_coco_crowd_region_is_ignore_in_semantic_mask(tmp_path):
    data = json.loads((SAMPLE_DIR / "coco.json").read_text())
    data["annotations"][1]["iscrowd"] = 1
    shutil.copytree(SAMPLE_DIR / "images", tmp_path / "images")
    (tmp_path / "c.json").write_text(json.dumps(data))
    ds = build_component(
        "dataset", {"type": "coco", "ann_file": str(tmp_path / "c.json"), "semantic_masks": True}
    )
    _, t = ds[0]
    assert t["iscrowd"].tolist() == [0, 1] and t["semantic_mask"][16, 20] == 255


def test_voc_sample_difficult_is_crowd():
    ds = build_component(
        "dataset",
        {"type": "voc", "root": str(SAMPLE_VOC), "split": "test", "classes": ["cell", "dot"]},
    )
    image, t = ds[0]
    assert image.shape == (3, 30, 40) and ds.class_names == ["cell", "dot"]
    assert t["boxes"].tolist() == [[5.0, 5.0, 20.0, 15.0], [30.0, 20.0, 34.0, 24.0]]
    assert t["labels"].tolist() == [1, 2] and t["iscrowd"].tolist() == [0, 1]
    assert t["image_id"] == 1 and t["area"].tolist() == [150.0, 16.0]


def _voc_copy(tmp_path):
    root = tmp_path / "voc"
    shutil.copytree(SAMPLE_VOC, root)
    return root


def test_voc_unknown_class_and_bad_xml(tmp_path):
    root = _voc_copy(tmp_path)
    params = {"type": "voc", "root": str(root), "split": "test"}
    with pytest.raises(DataError, match=r"s1\.jpg.*category 'dot' is not a known class"):
        build_component("dataset", {**params, "classes": ["cell"]})
    ds = build_component("dataset", {**params, "classes": ["cell"], "max_bad_samples": 1})
    assert ds.report.counts == {"unknown_category": 1} and len(ds.records[0].labels) == 1
    (root / "Annotations" / "s1.xml").write_text("<annotation><object>")
    with pytest.raises(DataError, match=r"s1\.xml: not a valid VOC annotation"):
        build_component("dataset", {**params, "classes": ["cell", "dot"]})
    ds = build_component("dataset", {**params, "classes": ["cell", "dot"], "max_bad_samples": 1})
    assert len(ds) == 0 and ds.report.counts == {"unreadable_annotation": 1}


def test_voc_missing_split_file(tmp_path):
    with pytest.raises(
        DataError, match=r"holdout\.txt: split file not found \(splits here: test\)"
    ):
        build_component(
            "dataset",
            {"type": "voc", "root": str(SAMPLE_VOC), "split": "holdout", "classes": ["a"]},
        )
