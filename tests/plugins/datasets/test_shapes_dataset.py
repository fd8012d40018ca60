"""The built-in shapes set: deterministic, cached, masks consistent with boxes."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import masks_to_boxes

from anchorage.core.build import build_component
from anchorage.core.errors import SpecError
from anchorage.plugins.datasets.shapes import SHAPES, cache_root


def _shapes(root, **params):
    return build_component(
        "dataset",
        {
            "type": "shapes",
            "num_images": 16,
            "image_size": [64, 96],
            "max_size": 40,
            "root": str(root),
            **params,
        },
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("shapes")


def test_deterministic_cached_and_splits_differ(root, tmp_path):
    a = _shapes(root, masks=True)
    start = time.perf_counter()
    again = _shapes(root)  # same generation parameters: reuses the files
    assert time.perf_counter() - start < 0.5
    assert again.folder == a.folder
    fresh = _shapes(tmp_path)  # a different cache folder regenerates the same bytes
    for name in ("images/000003.png", "annotations.json"):
        assert (fresh.folder / name).read_bytes() == (a.folder / name).read_bytes()
    val = _shapes(root, split="val")
    assert val.folder != a.folder
    assert not torch.equal(val[0][0], a[0][0])
    assert _shapes(root, seed=1).folder != a.folder


def test_sample_contract_and_masks_match_boxes(root):
    ds = _shapes(root, masks=True, semantic_masks=True, min_objects=2, max_objects=4)
    assert ds.class_names == ["rectangle", "ellipse", "triangle"]
    counts = []
    for i in range(len(ds)):
        image, t = ds[i]
        assert image.shape == (3, 64, 96) and image.dtype == torch.float32
        assert 0 <= image.min() and image.max() <= 1
        n = len(t["labels"])
        counts.append(n)
        assert t["masks"].shape == (n, 64, 96) and t["masks"].dtype == torch.uint8
        assert t["labels"].dtype == torch.int64 and set(t["labels"].tolist()) <= {1, 2, 3}
        # the box is the tight box of the visible mask (masks_to_boxes is inclusive)
        expected = masks_to_boxes(t["masks"]) + torch.tensor([0.0, 0.0, 1.0, 1.0])
        assert torch.equal(t["boxes"].as_subclass(torch.Tensor), expected)
        assert torch.equal(t["area"], t["masks"].flatten(1).sum(1).float())
        assert (t["masks"].sum(0) <= 1).all()  # visible parts do not overlap
        sem = t["semantic_mask"]
        assert sem.dtype == torch.int64 and sem.shape == (64, 96)
        painted = (t["masks"] * t["labels"][:, None, None]).sum(0)
        assert torch.equal(sem, painted)
        assert t["orig_size"] == (64, 96) and t["image_id"] == i + 1
    assert min(counts) >= 2 and max(counts) <= 4


def test_more_classes_and_backgrounds(root):
    ds = _shapes(root, classes=list(SHAPES), background="texture", format="jpg", num_images=8)
    assert ds.class_names == list(SHAPES)
    assert Path(ds.records[0].file).suffix == ".jpg"
    labels = np.concatenate([r.labels for r in ds.records])
    assert labels.max() <= len(SHAPES)


def test_bad_parameters(root):
    with pytest.raises(SpecError, match="classes"):
        _shapes(root, classes=["rectangle", "blob"])
    with pytest.raises(SpecError, match="min_objects"):
        _shapes(root, min_objects=5, max_objects=2)


def test_cache_root_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ANCHORAGE_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    assert cache_root("elsewhere") == Path("elsewhere")
