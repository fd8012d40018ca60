import pytest
import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from anchorage.core import DataError
from anchorage.plugins.models.preprocess import ImagePreprocessor, PreprocessConfig

MEAN, STD = (0.48235, 0.45882, 0.40784), (1 / 255.0,) * 3


def _inputs():
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 40, 60, generator=g), torch.rand(3, 50, 30, generator=g)]
    targets = [
        {
            "boxes": torch.tensor([[1.0, 2.0, 30.0, 20.0]]),
            "labels": torch.tensor([1]),
            "image_id": 3,
        },
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    return images, targets


def test_fixed_size_same_as_torchvision_ssd_transform():
    images, targets = _inputs()
    ours = ImagePreprocessor(
        PreprocessConfig(mean=MEAN, std=STD, fixed_size=(32, 48), size_divisible=1)
    )
    ref = GeneralizedRCNNTransform(
        32, 48, list(MEAN), list(STD), size_divisible=1, fixed_size=(48, 32)
    )
    batch = ours(images, targets)
    ref_list, ref_targets = ref(images, [dict(t) for t in targets])
    assert batch.images.shape == (2, 3, 32, 48)
    assert torch.equal(batch.images, ref_list.tensors)
    assert batch.image_sizes == [(32, 48), (32, 48)]
    assert batch.original_sizes == [(40, 60), (50, 30)]
    torch.testing.assert_close(batch.targets[0]["boxes"], torch.tensor([[0.8, 1.6, 24.0, 16.0]]))
    assert torch.equal(batch.targets[0]["boxes"], ref_targets[0]["boxes"])
    assert batch.targets[0]["image_id"] == 3 and targets[0]["boxes"][0, 0] == 1.0  # not in place


def test_min_max_size_pads_to_divisible_and_maps_back():
    images, _ = _inputs()
    pre = ImagePreprocessor(
        PreprocessConfig(min_size=(64,), max_size=100, size_divisible=32)
    ).eval()
    batch = pre(images)
    assert batch.image_sizes == [(64, 96), (100, 60)]
    assert batch.images.shape == (2, 3, 128, 96)
    assert (batch.images[0, :, 64:] == 0).all()
    results = [
        {"boxes": torch.tensor([[0.0, 0.0, 96.0, 64.0]])},
        {"boxes": torch.tensor([[6.0, 10.0, 12.0, 20.0]])},
    ]
    out = pre.postprocess(results, batch.image_sizes, batch.original_sizes)
    torch.testing.assert_close(out[0]["boxes"], torch.tensor([[0.0, 0.0, 60.0, 40.0]]))
    torch.testing.assert_close(out[1]["boxes"], torch.tensor([[3.0, 5.0, 6.0, 10.0]]))


def test_postprocess_pastes_masks_to_original_size():
    pre = ImagePreprocessor(PreprocessConfig(fixed_size=(20, 20), size_divisible=1))
    results = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "masks": torch.ones(1, 1, 8, 8)}]
    out = pre.postprocess(results, [(20, 20)], [(40, 30)])
    assert out[0]["masks"].shape == (1, 1, 40, 30)
    mask = out[0]["masks"][0, 0]  # the box maps to x 0..15, y 0..20 in the original
    assert mask[2:18, 2:13].min() > 0.5 and mask[22:].max() == 0 and mask[:, 17:].max() == 0


def test_bad_inputs_give_clear_errors():
    pre = ImagePreprocessor(PreprocessConfig(fixed_size=(8, 8)))
    with pytest.raises(DataError, match="non-empty list"):
        pre(torch.rand(1, 3, 8, 8))
    with pytest.raises(DataError, match=r"images\[0\]: expected a \[3,H,W\]"):
        pre([torch.rand(8, 8)])
    with pytest.raises(DataError, match="float image"):
        pre([torch.zeros(3, 8, 8, dtype=torch.uint8)])
    with pytest.raises(DataError, match=r"targets\[0\]\['boxes'\]"):
        pre([torch.rand(3, 8, 8)], [{"boxes": torch.zeros(4)}])


@pytest.mark.parametrize("h, w", [(100, 90), (96, 80), (112, 128), (333, 500), (77, 1000)])
def test_export_batch_resizes_as_the_eager_batch(h: int, w: int):
    """The exported graph's resize (``export_batch``) equals eager mode's, sizes and pixels:
    100 x 90 to min_size 128 is 128 x 115 in torchvision's python-float arithmetic, where a
    float32 scale would give 127 x 115."""
    pre = ImagePreprocessor(PreprocessConfig(min_size=(128,), max_size=160, size_divisible=32))
    image = torch.rand(3, h, w, generator=torch.Generator().manual_seed(h * w))
    eager = pre.eval()([image])
    exported, size = pre.export_batch(image[None])
    assert [size] == eager.image_sizes
    torch.testing.assert_close(exported, eager.images, atol=1e-5, rtol=0)
