"""The YOLO, RetinaNet and FCOS specs validate, build, and train a step on their own data."""

from pathlib import Path

import pytest
import torch

from anchorage.core import build_model, load_spec
from anchorage.core.data import build_dataloader
from anchorage.core.engine.batches import epoch_batches

BCCD = Path("../shared/datasets/bccd/BCCD")
SHAPES = ["yolo_shapes", "retinanet_r18_fpn_shapes", "fcos_r18_fpn_shapes"]


@pytest.mark.parametrize("name", ["retinanet_r50_fpn_coco", "fcos_r50_fpn_coco"])
def test_coco_specs_build_with_torchvision_head_layout(name):
    model = build_model(load_spec(f"specs/{name}.yaml"))
    assert model.head.classification_head.cls_logits.out_channels % 91 == 0
    assert [f.stride for f in model.neck.feature_info] == [8, 16, 32, 64, 128]


@pytest.mark.parametrize("name", [*SHAPES, "yolo_bccd"])
def test_spec_trains_one_step_on_its_data(name, tmp_path):
    if name.endswith("bccd") and not BCCD.is_dir():
        pytest.skip(f"BCCD not found at {BCCD} (run from the repository root)")
    overrides = ["data.train.batch_size=2"]
    if not name.endswith("bccd"):
        overrides += ["data.train.dataset.num_images=4", f"data.train.dataset.root={tmp_path}"]
    spec = load_spec(f"specs/{name}.yaml", overrides)
    images, targets = next(iter(epoch_batches(build_dataloader(spec, "train"), 0, 0)))
    if name.startswith("yolo"):  # multi-scale: one square size per batch from the list
        sizes = spec.section("data").train.multi_scale.sizes
        assert len({im.shape for im in images}) == 1 and images[0].shape[-1] in sizes
    torch.manual_seed(0)
    model = build_model(spec).train()
    losses = model(images, targets)
    total = sum(losses.values())
    assert torch.isfinite(total) and len(losses) >= 2
    total.backward()
    model.eval()
    with torch.no_grad():
        (det,) = model(images[:1])
    assert det["boxes"].shape[1] == 4 and det["labels"].dtype == torch.int64
