"""specs/ssd300_vgg16_coco.yaml with converted torchvision weights == torchvision's SSD300.

SSD300 has no smaller torchvision twin (the VGG-16 trunk and the 300x300 input are the model),
so the eval check runs in the quick suite and the train-loss check is marked slow.
"""

import pytest
import torch
from torchvision.models.detection import ssd300_vgg16

from anchorage.core import build_model, load_checkpoint, load_spec
from anchorage.plugins.models.convert import convert_weights

SCORE_THRESH = 0.02


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.manual_seed(0)
    ref = ssd300_vgg16(weights=None, weights_backbone=None, score_thresh=SCORE_THRESH)
    tmp = tmp_path_factory.mktemp("ssd300")
    torch.save(ref.state_dict(), tmp / "tv.pth")
    spec = load_spec(
        "specs/ssd300_vgg16_coco.yaml", [f"model.postprocessor.score_thresh={SCORE_THRESH}"]
    )
    convert_weights("torchvision", tmp / "tv.pth", spec, tmp / "ours.pt")
    ours = build_model(spec)
    data = load_checkpoint(ours, tmp / "ours.pt")
    assert data["converted_from"]["source"] == "torchvision" and data["spec"]["model"]
    return ref, ours


def _inputs():
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 240, 320, generator=g), torch.rand(3, 300, 200, generator=g)]
    targets = [
        {
            "boxes": torch.tensor([[10.0, 20.0, 200.0, 180.0], [150.0, 30.0, 300.0, 90.0]]),
            "labels": torch.tensor([1, 17]),
        },
        {"boxes": torch.tensor([[5.0, 5.0, 60.0, 250.0]]), "labels": torch.tensor([90])},
    ]
    return images, targets


def test_eval_detections_equal_torchvision(models):
    ref, ours = models
    images, _ = _inputs()
    ref.eval()
    ours.eval()
    with torch.no_grad():
        expected, got = ref(images), ours(images)
    for e, o in zip(expected, got):
        assert len(e["scores"]) > 0, "no detections to compare; lower SCORE_THRESH"
        assert o["boxes"].shape == e["boxes"].shape
        assert torch.equal(o["labels"], e["labels"])
        assert (o["scores"] - e["scores"]).abs().max() <= 1e-4
        assert (o["boxes"] - e["boxes"]).abs().max() <= 1e-4


@pytest.mark.slow
def test_train_losses_equal_torchvision(models):
    ref, ours = models
    images, targets = _inputs()
    ref.train()
    ours.train()
    with torch.no_grad():
        expected = ref(images, [dict(t) for t in targets])
        got = ours(images, targets)
    assert set(got) == {"loss_classification", "loss_bbox_regression"}
    torch.testing.assert_close(
        got["loss_classification"], expected["classification"], atol=1e-4, rtol=1e-5
    )
    torch.testing.assert_close(
        got["loss_bbox_regression"], expected["bbox_regression"], atol=1e-4, rtol=1e-5
    )
