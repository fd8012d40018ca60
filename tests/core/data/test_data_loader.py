"""The data section, build_dataset / build_dataloader, samplers and worker seeding."""

from __future__ import annotations

import pytest
import torch

from anchorage.core import Spec
from anchorage.core.data import ShardSampler, build_dataloader, build_dataset, pad_targets
from anchorage.core.errors import SpecError


def _spec(root, **train) -> Spec:
    ds = {"type": "shapes", "num_images": 12, "image_size": [64, 80], "max_size": 40, "root": root}
    return Spec.from_dict(
        {
            "data": {
                "train": {
                    "dataset": ds,
                    "transforms": [{"type": "horizontal_flip"}, {"type": "sanitize_boxes"}],
                    "batch_size": 5,
                    **train,
                },
                "val": {"dataset": {**ds, "split": "val"}, "batch_size": 4},
            }
        }
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def test_loader_yields_lists_and_respects_batch_size(root):
    loader = build_dataloader(_spec(root), "val")
    batches = list(loader)
    assert [len(images) for images, _ in batches] == [4, 4, 4]
    images, targets = batches[0]
    assert images[0].shape == (3, 64, 80) and images[0].dtype == torch.float32
    assert [t["image_id"] for t in targets] == [1, 2, 3, 4]  # val is not shuffled
    boxes, labels, valid = pad_targets(targets)
    assert boxes.shape[0] == 4 and (labels[valid] >= 1).all()


def test_train_shuffle_is_seeded(root):
    spec = _spec(root, drop_last=True)
    order = [[t["image_id"] for t in ts] for _, ts in build_dataloader(spec, "train", seed=3)]
    again = [[t["image_id"] for t in ts] for _, ts in build_dataloader(spec, "train", seed=3)]
    other = [[t["image_id"] for t in ts] for _, ts in build_dataloader(spec, "train", seed=4)]
    assert order == again and order != other
    assert len(order) == 2  # 12 images, batch 5, drop_last


def test_workers_give_the_same_batches(root):
    spec = _spec(root, num_workers=2, shuffle=False)
    a = [ts for _, ts in build_dataloader(spec, "train")]
    b = [ts for _, ts in build_dataloader(_spec(root, shuffle=False), "train")]
    assert [[t["image_id"] for t in ts] for ts in a] == [[t["image_id"] for t in ts] for ts in b]


def test_shard_sampler_covers_every_index_once():
    shards = [list(ShardSampler(10, r, 3)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(10))
    assert [len(s) for s in shards] == [4, 3, 3]


def test_missing_split_and_bad_section_errors(root):
    with pytest.raises(SpecError, match="data.test.dataset"):
        build_dataset(_spec(root), "test")
    with pytest.raises(SpecError, match="unknown data split"):
        build_dataset(_spec(root), "holdout")
    with pytest.raises(SpecError, match=r"data\.train\.batch_size"):
        Spec.from_dict({"data": {"train": {"batch_size": 0}}})
    with pytest.raises(SpecError, match=r"data\.train\.bogus"):
        Spec.from_dict({"data": {"train": {"bogus": 1}}})
    with pytest.raises(SpecError, match=r"data\.val\.transforms\[0\]\.type"):
        Spec.from_dict({"data": {"val": {"transforms": [{"type": "horizontal_flop"}]}}})


def test_build_dataset_attaches_transforms(root):
    spec = _spec(root)
    plain = build_dataset(spec, "train", transforms=False)
    flipped = build_dataset(
        Spec.from_dict(
            {
                "data": {
                    "train": {
                        "dataset": spec.to_dict()["data"]["train"]["dataset"],
                        "transforms": [{"type": "horizontal_flip", "p": 1.0}],
                    }
                }
            }
        ),
        "train",
    )
    (a, ta), (b, tb) = plain[0], flipped[0]
    assert torch.equal(a.flip(-1), b)
    w = a.shape[-1]
    expected = ta["boxes"].as_subclass(torch.Tensor)[:, [2, 1, 0, 3]] * torch.tensor([-1, 1, -1, 1])
    assert torch.allclose(
        tb["boxes"].as_subclass(torch.Tensor), expected + torch.tensor([w, 0, w, 0])
    )
