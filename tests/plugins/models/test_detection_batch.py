"""prepare_batch: one checked, preprocessed batch with padded ground truth."""

import pytest
import torch

from anchorage.core import DataError
from anchorage.plugins.models.detection_batch import prepare_batch
from anchorage.plugins.models.preprocess import ImagePreprocessor, PreprocessConfig

PRE = ImagePreprocessor(PreprocessConfig(fixed_size=(32, 32), size_divisible=1))


def _inputs():
    images = [torch.rand(3, 64, 64), torch.rand(3, 32, 16)]
    targets = [
        {
            "boxes": torch.tensor([[0.0, 0, 32, 32], [8, 8, 16, 16]]),
            "labels": torch.tensor([1, 2]),
            "iscrowd": torch.tensor([0, 1]),
            "proposals": torch.tensor([[0.0, 0, 64, 64]]),
        },
        {
            "boxes": torch.zeros(0, 4),
            "labels": torch.zeros(0, dtype=torch.int64),
            "proposals": torch.tensor([[0.0, 0, 16, 32], [4, 4, 8, 8]]),
        },
    ]
    return images, targets


def test_train_batch_has_padded_gt_in_batch_pixels_and_scaled_proposals():
    images, targets = _inputs()
    batch = prepare_batch(
        PRE, images, targets, model="m", num_classes=2, training=True, proposals=True
    )
    assert batch.images.shape == (2, 3, 32, 32)
    assert batch.gt.boxes.shape == (2, 2, 4)
    torch.testing.assert_close(batch.gt.boxes[0, 0], torch.tensor([0.0, 0, 16, 16]))
    assert batch.gt.valid.tolist() == [[True, False], [False, False]]  # crowd box: invalid
    assert batch.gt.labels.tolist() == [[1, 2], [-1, -1]]
    torch.testing.assert_close(batch.proposals[0], torch.tensor([[0.0, 0, 32, 32]]))
    torch.testing.assert_close(batch.proposals[1][1], torch.tensor([8.0, 4, 16, 8]))
    assert batch.masks is None


def test_eval_batch_has_no_gt_and_keeps_no_targets():
    images, targets = _inputs()
    batch = prepare_batch(PRE, images, targets, model="m", num_classes=2, training=False)
    assert batch.gt is None and batch.targets is None and batch.proposals is None
    assert batch.original_sizes == [(64, 64), (32, 16)]


@pytest.mark.parametrize(
    "change,message",
    [
        ({"labels": torch.tensor([1, 3])}, r"targets\[0\]\['labels'\]: labels must be in 1\.\.2"),
        ({"labels": torch.tensor([1])}, r"targets\[0\]: 2 boxes but 1 labels"),
        ({"labels": torch.tensor([1.0, 2.0])}, r"expected an int64 tensor"),
        ({"boxes": torch.tensor([[0.0, 0, 0, 5], [1, 1, 2, 2]])}, "non-positive width"),
        ({"boxes": torch.zeros(2, 3)}, r"targets\[0\]\['boxes'\]: expected a float \[N,4\]"),
    ],
)
def test_bad_targets_are_data_errors(change, message):
    images, targets = _inputs()
    targets[0] = {**targets[0], **change}
    with pytest.raises(DataError, match=message):
        prepare_batch(PRE, images, targets, model="m", num_classes=2, training=True)
    with pytest.raises(DataError, match="m: train mode needs targets"):
        prepare_batch(PRE, images, None, model="m", num_classes=2, training=True)


def test_masks_are_checked_against_the_image_size():
    images, targets = _inputs()
    targets[0]["masks"] = torch.zeros(2, 64, 64, dtype=torch.uint8)
    targets[1]["masks"] = torch.zeros(0, 32, 15, dtype=torch.uint8)
    with pytest.raises(DataError, match=r"targets\[1\]\['masks'\]: expected \(0, 32, 16\)"):
        prepare_batch(PRE, images, targets, model="m", num_classes=2, training=True, masks=True)
