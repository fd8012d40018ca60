"""The single-shot specs of the zoo load, build, and train one step on their own data."""

from pathlib import Path

import pytest
import torch

from anchorage.core import build_model, load_spec
from anchorage.core.data import build_dataset

SPECS = ["tiny_ssd_shapes", "tiny_ssd_bccd", "ssd300_vgg16_bccd", "ssd300_vgg16_coco"]
BCCD = Path("../shared/datasets/bccd/BCCD")


@pytest.mark.parametrize("name", SPECS)
def test_spec_validates_and_declares_three_sections(name):
    spec = load_spec(f"specs/{name}.yaml")
    assert spec.model.type == "single_shot"
    assert spec.get("train") is not None and spec.get("data") is not None
    assert spec.get("eval") is not None


def test_tiny_ssd_bccd_trains_one_step_on_a_real_image():
    if not BCCD.is_dir():
        pytest.skip(f"BCCD not found at {BCCD} (run from the repository root)")
    spec = load_spec("specs/tiny_ssd_bccd.yaml")
    image, target = build_dataset(spec, "train", transforms=False)[0]
    torch.manual_seed(0)
    model = build_model(spec).train()
    losses = model([image], [target])
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    model.eval()
    with torch.no_grad():
        (det,) = model([image])
    assert det["boxes"].shape[1] == 4
