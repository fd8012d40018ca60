"""Tiny detectors for the benchmark tests: an anchorage-style one and a 'torchvision' twin.

``ToyDetector`` (registered as model ``bench_toy_detector`` inside ``bench_toys()``) has the
stage attributes the fallback finds (preprocess, backbone, head, postprocess). ``ToyTwin``
computes the same function with other parameter names (features, predictor), so a converter
(``convert_toy``) is needed to give the detector the twin's weights — as for a real
torchvision twin.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import attrs
import torch
from torch import nn

from anchorage.benchmarking import entries
from anchorage.core.registry import MODELS

NUM_DETECTIONS = 5


class Stack(nn.Module):
    """list of [3,H,W] → [B,3,H,W], scaled to -1..1."""

    def forward(self, images: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(images)) * 2 - 1


class TopK(nn.Module):
    """[B,5,h,w] (4 box values + score) → per-image dicts of the top detections."""

    def forward(self, p: torch.Tensor, size: int) -> list[dict[str, torch.Tensor]]:
        p = p.flatten(2)  # [B,5,hw]
        scores, idx = p[:, 4].sigmoid().topk(min(NUM_DETECTIONS, p.shape[-1]), dim=1)
        raw = p[:, :4].gather(2, idx[:, None].expand(-1, 4, -1)).transpose(1, 2).sigmoid()
        xy, wh = raw[..., :2] * size, raw[..., 2:] * size / 2
        boxes = torch.cat([xy, xy + wh], -1)
        return [
            {"boxes": b, "scores": s, "labels": torch.ones_like(s, dtype=torch.int64)}
            for b, s in zip(boxes, scores)
        ]


def _loss(p: torch.Tensor, targets: list[dict]) -> dict[str, torch.Tensor]:
    boxes = torch.stack([t["boxes"].float().mean() for t in targets])
    return {"loss_toy": (p.mean() - boxes.mean() / 1000).pow(2), "loss_zero": p.sum() * 0}


class ToyDetector(nn.Module):
    """A one-conv detector with anchorage's model I/O (a toy)."""

    @attrs.frozen(kw_only=True)
    class Config:
        width: int = 4
        fail: Literal["none", "oom"] = "none"

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.preprocess = Stack()
        self.backbone = nn.Conv2d(3, cfg.width, 3, stride=4, padding=1)
        self.head = nn.Conv2d(cfg.width, 5, 1)
        self.postprocess = TopK()

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None):
        if self.cfg.fail == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        p = self.head(self.backbone(self.preprocess(images)))
        if self.training:
            return _loss(p, targets or [])
        return self.postprocess(p, images[0].shape[-1])


class ToyTwin(nn.Module):
    """The same function as ToyDetector, with torchvision-like parameter names."""

    def __init__(self) -> None:
        super().__init__()
        self.stack = Stack()
        self.features = nn.Conv2d(3, 4, 3, stride=4, padding=1)
        self.predictor = nn.Conv2d(4, 5, 1)
        self.topk = TopK()

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None):
        p = self.predictor(self.features(self.stack(images)))
        if self.training:
            return _loss(p, targets or [])
        return self.topk(p, images[0].shape[-1])


def convert_toy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ToyTwin state_dict → ToyDetector state_dict."""
    names = {"features": "backbone", "predictor": "head"}
    return {names[k.split(".")[0]] + "." + k.split(".", 1)[1]: v for k, v in state.items()}


CONVERTERS = {"bench_toy_detector": convert_toy}


@contextmanager
def bench_toys(monkeypatch=None) -> Iterator[None]:
    """Register ``bench_toy_detector``; with ``monkeypatch`` also the baseline ``tv:toy``."""
    MODELS.register("bench_toy_detector")(ToyDetector)
    if monkeypatch is not None:
        real = entries.torchvision_baselines
        build = entries.build_torchvision
        monkeypatch.setattr(
            entries, "torchvision_baselines", lambda: {**real(), "toy": "detection"}
        )
        monkeypatch.setattr(
            entries,
            "build_torchvision",
            lambda name, kwargs=None: ToyTwin() if name == "toy" else build(name, kwargs),
        )
    try:
        yield
    finally:
        MODELS.unregister("bench_toy_detector")


def write_spec(folder: Path, name: str = "toy.yaml", **params: object) -> Path:
    """A spec file with model ``bench_toy_detector`` and ``params``."""
    lines = ["model:", "  type: bench_toy_detector", *[f"  {k}: {v}" for k, v in params.items()]]
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path
