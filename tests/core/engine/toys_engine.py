"""Tiny detector and in-memory dataset for engine tests (registered only while in use).

Load with ``load_toys()`` (by file path: the tests folder is not a package); register with
``with registered(): ...``. ``toy_spec()`` is a complete spec using them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import tv_tensors

from anchorage.core.registry import DATASETS, MODELS

MODEL = "engine_toy_detector"
DATASET = "engine_toy_shapes"
CLASSES = ["square", "disc"]


class ToyDetector(nn.Module):
    """Pools a conv feature and regresses one box + class per image (a toy).

    Train: ``{"loss_box", "loss_cls"}`` against each image's first box. Eval: one detection
    per image (boxes in pixels, softmax score, label in 1..C). Dropout makes resume depend
    on the RNG state. ``nan_after``: forward calls after which the loss becomes NaN;
    ``nan_grad``: finite loss, NaN gradients; ``inf_buffer_after``: forward calls after which
    a running-statistics buffer (unused by the loss, like BatchNorm's ``running_var`` in
    training) becomes Inf while the loss stays finite.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        num_classes: int = 2
        hidden: int = 8
        dropout: float = 0.2
        nan_after: int | None = None
        nan_grad: bool = False
        inf_buffer_after: int | None = None

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = nn.Conv2d(3, cfg.hidden, 3, padding=1)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden, 4 + cfg.num_classes + 1)
        self.calls = 0
        if cfg.inf_buffer_after is not None:
            self.register_buffer("running_var", torch.ones(cfg.hidden))

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None) -> Any:
        sizes = torch.tensor([[i.shape[2], i.shape[1]] * 2 for i in images], dtype=torch.float32)
        x = torch.stack([F.interpolate(i[None], size=(16, 16))[0] for i in images])
        out = self.head(self.drop(self.backbone(x).relu().mean((2, 3))))
        box = out[:, :4].sigmoid()
        logits = out[:, 4:]
        if self.training:
            gt_box = torch.stack([t["boxes"][0].as_subclass(torch.Tensor) for t in targets])
            gt_label = torch.stack([t["labels"][0] for t in targets])
            losses = {
                "loss_box": F.smooth_l1_loss(box, gt_box / sizes.to(box.device)),
                "loss_cls": F.cross_entropy(logits, gt_label),
            }
            self.calls += 1
            if self.cfg.inf_buffer_after is not None and self.calls > self.cfg.inf_buffer_after:
                self.running_var.fill_(float("inf"))
            if self.cfg.nan_after is not None and self.calls > self.cfg.nan_after:
                losses["loss_box"] = losses["loss_box"] * float("nan")
            if self.cfg.nan_grad:  # value 0, gradient 0 * inf = NaN
                losses["loss_box"] = losses["loss_box"] + (out.sum() * 0).sqrt()
            return losses
        scores, labels = logits[:, 1:].softmax(-1).max(-1)
        pixels = box * sizes.to(box.device)
        pixels = torch.cat(
            [pixels[:, :2].minimum(pixels[:, 2:]), pixels[:, :2].maximum(pixels[:, 2:])], 1
        )
        return [
            {
                "boxes": pixels[i : i + 1],
                "scores": scores[i : i + 1],
                "labels": labels[i : i + 1] + 1,
            }
            for i in range(len(images))
        ]


class ToyShapes(torch.utils.data.Dataset):
    """``num_images`` random images [3,size,size] with one or two boxes each (a toy)."""

    @attrs.frozen(kw_only=True)
    class Config:
        num_images: int = 8
        size: int = 24
        seed: int = 0

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.class_names = list(CLASSES)

    def __len__(self) -> int:
        return self.cfg.num_images

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, dict]:
        g = torch.Generator().manual_seed(self.cfg.seed * 1000 + index)
        s = self.cfg.size
        xy = torch.randint(0, s // 2, (2,), generator=g).float()
        wh = torch.randint(4, s // 2, (2,), generator=g).float()
        box = torch.cat([xy, xy + wh])[None]
        label = torch.randint(1, 3, (1,), generator=g)
        image = torch.rand(3, s, s, generator=g) * 0.2
        x0, y0, x1, y1 = box[0].long().tolist()
        image[int(label) - 1, y0:y1, x0:x1] = 1.0
        target = {
            "boxes": tv_tensors.BoundingBoxes(box, format="XYXY", canvas_size=(s, s)),
            "labels": label.long(),
            "image_id": index,
            "iscrowd": torch.zeros(1, dtype=torch.int64),
            "area": (wh[0] * wh[1])[None],
            "orig_size": (s, s),
        }
        return tv_tensors.Image(image), target


@contextlib.contextmanager
def registered() -> Iterator[None]:
    """Register the toy model and dataset for the duration of a block."""
    MODELS.register(MODEL)(ToyDetector)
    DATASETS.register(DATASET)(ToyShapes)
    try:
        yield
    finally:
        MODELS.unregister(MODEL)
        DATASETS.unregister(DATASET)


def toy_spec(**train: Any) -> dict:
    """A complete spec (plain data) over the toys; ``train`` keys override the section."""
    return {
        "model": {"type": MODEL, "num_classes": 2},
        "data": {
            "train": {"dataset": {"type": DATASET, "num_images": 8}, "batch_size": 2},
            "val": {"dataset": {"type": DATASET, "num_images": 4, "seed": 1}, "batch_size": 2},
        },
        "eval": {"metrics": [{"type": "coco_bbox"}], "split": "val"},
        "train": {
            "epochs": 2,
            "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9},
            "progress": False,
            "log_interval": 2,
            "log_images": 1,
            **train,
        },
    }
