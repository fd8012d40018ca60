"""Multi-scale training: one square size per batch, drawn every N batches from the seed."""

from __future__ import annotations

import pytest
import torch

from anchorage.core import Spec
from anchorage.core.data import build_dataloader
from anchorage.core.data.multiscale import MultiScaleBatchSampler, MultiScaleConfig, scale_at
from anchorage.core.engine.batches import epoch_batches
from anchorage.core.errors import SpecError
from anchorage.plugins.models.preprocess import ImagePreprocessor, PreprocessConfig

SIZES = [32, 48, 64, 96]


def _spec(root, split: str = "train", **extra) -> Spec:
    ds = {"type": "shapes", "num_images": 12, "image_size": [64, 80], "max_size": 40, "root": root}
    train = {"dataset": ds, "batch_size": 2, "multi_scale": {"sizes": SIZES, "every": 2}}
    return Spec.from_dict({"data": {split: {**train, **extra}}})


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def _sizes(loader, epoch: int, seed: int, skip: int = 0) -> list[set]:
    return [
        {tuple(im.shape[-2:]) for im in images}
        for images, _ in epoch_batches(loader, epoch, seed, skip=skip)
    ]


def test_each_batch_has_one_square_size_changing_every_n(root):
    loader = build_dataloader(_spec(root), "train", seed=1)
    sizes = _sizes(loader, 0, 1) + _sizes(loader, 1, 1)
    assert all(len(s) == 1 for s in sizes)
    flat = [next(iter(s)) for s in sizes]
    assert all(h == w and h in SIZES for h, w in flat)
    assert all(flat[i] == flat[i + 1] for i in range(0, len(flat), 2))  # every: 2
    assert len(set(flat)) > 1  # 12 batches over two epochs draw more than one size


def test_boxes_follow_the_resize(root):
    loader = build_dataloader(_spec(root), "train", seed=1)
    images, targets = next(iter(epoch_batches(loader, 0, 1)))
    for image, target in zip(images, targets):
        s = image.shape[-1]
        assert (target["boxes"] <= s).all() and target["boxes"].shape[0] > 0


def test_schedule_is_seeded_rank_free_and_resume_exact(root):
    a = build_dataloader(_spec(root), "train", seed=5)
    b = build_dataloader(_spec(root, num_workers=2), "train", seed=5)
    assert _sizes(a, 1, 5) == _sizes(b, 1, 5)  # workers do not change it
    assert _sizes(a, 1, 5)[3:] == _sizes(a, 1, 5, skip=3)  # mid-epoch resume
    draws = [scale_at(k, tuple(SIZES), 1, 5) for k in range(40)]
    assert draws == [scale_at(k, tuple(SIZES), 1, 5) for k in range(40)]
    assert draws != [scale_at(k, tuple(SIZES), 1, 6) for k in range(40)]
    # the batch sampler takes the base seed, not seed + rank: same sizes on every rank
    sampler = a.batch_sampler
    assert isinstance(sampler, MultiScaleBatchSampler) and sampler.seed == 5


def test_multi_scale_is_train_only_and_validated(root):
    with pytest.raises(SpecError, match=r"data.val.multi_scale: multi-scale resizing is for"):
        build_dataloader(_spec(root, "val"), "val")
    with pytest.raises(SpecError, match=r"data.train.multi_scale.sizes"):
        _spec(root, multi_scale={"sizes": []}).section("data")
    with pytest.raises(SpecError, match=r"data.train.multi_scale.every"):
        _spec(root, multi_scale={"sizes": [32], "every": 0}).section("data")
    cfg = MultiScaleConfig(sizes=(32,))
    assert cfg.every == 10


def test_keep_train_size_preprocess_resizes_only_in_eval():
    pre = ImagePreprocessor(
        PreprocessConfig(fixed_size=(64, 64), size_divisible=32, keep_train_size=True)
    )
    images = [torch.rand(3, 96, 96), torch.rand(3, 96, 96)]
    targets = [{"boxes": torch.tensor([[1.0, 2.0, 50.0, 60.0]]), "labels": torch.tensor([1])}] * 2
    batch = pre.train()(images, targets)
    assert batch.images.shape == (2, 3, 96, 96) and batch.image_sizes == [(96, 96)] * 2
    assert torch.equal(batch.targets[0]["boxes"], targets[0]["boxes"])
    assert batch.targets[0] is not targets[0]
    assert pre.eval()(images).images.shape == (2, 3, 64, 64)
