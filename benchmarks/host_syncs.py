#!/usr/bin/env python
"""Benchmark: host-device synchronisations per train step and per eval forward, vs torchvision.

Every call that would make the host wait for a GPU (``.item()``, ``.tolist()``, ``nonzero``,
boolean-mask indexing, NMS, ...; see ``anchorage.core.host_sync``) is counted on the CPU,
so the figure needs no GPU. Pairs: Faster R-CNN and Mask R-CNN R50-FPN, RetinaNet and FCOS
R50-FPN and SSD300, each spec with its torchvision twin's converted weights (the fine-tuning
layout), resized to ``--size`` pixels, a batch of ``--batch`` random images with two boxes
each (and masks). Prints a Markdown table, then the sites of anchorage's syncs. Each cell is
"all syncs (of them NMS calls)": on the CPU the postprocessors take their CPU paths (NMS per
class group, torchvision's per-mask paste), which a GPU run replaces by batched calls, so
the NMS count is the CPU's; the other syncs are the same on a GPU. Mask R-CNN runs with
``mask_paste`` ``method: batched``, the paste a GPU takes by default.

example:
  python benchmarks/host_syncs.py --size 128 --batch 2
"""

from __future__ import annotations

import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch

from anchorage.benchmarking.entries import build_torchvision
from anchorage.core import build_model, load_checkpoint, load_spec
from anchorage.core.cli import make_parser, run_tool
from anchorage.core.host_sync import SyncSite, record_host_syncs
from anchorage.plugins.models.convert import convert_weights

PAIRS = (  # (torchvision builder, spec, masks?, resize keys)
    ("fasterrcnn_resnet50_fpn", "faster_rcnn_r50_fpn_coco", False, "rcnn"),
    ("maskrcnn_resnet50_fpn", "mask_rcnn_r50_fpn_coco", True, "mask"),
    ("retinanet_resnet50_fpn", "retinanet_r50_fpn_coco", False, "rcnn"),
    ("fcos_resnet50_fpn", "fcos_r50_fpn_coco", False, "rcnn"),
    ("ssd300_vgg16", "ssd300_vgg16_coco", False, "ssd"),
)


def _batch(size: int, batch: int, masks: bool) -> tuple[list[torch.Tensor], list[dict]]:
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, size, generator=g) for _ in range(batch)]
    targets = []
    for _ in range(batch):
        xy = torch.rand(2, 2, generator=g) * size * 0.5
        boxes = torch.cat([xy, xy + size * 0.2 + torch.rand(2, 2, generator=g) * size * 0.3], 1)
        t = {"boxes": boxes, "labels": torch.tensor([1, 2])}
        if masks:
            m = torch.zeros(2, size, size, dtype=torch.uint8)
            for k, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
                m[k, y0:y1, x0:x1] = 1
            t["masks"] = m
        targets.append(t)
    return images, targets


def _syncs(model: torch.nn.Module, images: list, targets: list) -> tuple[list, list]:
    """Sync sites of one train step (forward, loss, backward, SGD step) and one eval forward."""
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def step() -> None:
        model.train()
        losses = model(images, targets)
        sum(losses.values()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up: lazy initialisation
    with record_host_syncs() as train:
        step()
    model.eval()
    with torch.no_grad(), record_host_syncs() as infer:
        model(images)
    return train, infer


def _pair(tv_name: str, spec_name: str, size: int, resize: str, tmp: Path) -> tuple:
    if resize == "ssd":
        kwargs, overrides = {"pretrained_layout": True}, []
    else:
        kwargs = {"pretrained_layout": True, "min_size": size, "max_size": size}
        overrides = [f"model.preprocess.min_size=[{size}]", f"model.preprocess.max_size={size}"]
    if resize == "mask":
        overrides.append("model.roi_mask.paste.method=batched")
    torch.manual_seed(0)
    tv = build_torchvision(tv_name, kwargs)
    torch.save(tv.state_dict(), tmp / "tv.pth")
    spec = load_spec(f"specs/{spec_name}.yaml", overrides)
    ours = build_model(spec)
    load_checkpoint(ours, convert_weights("torchvision", tmp / "tv.pth", spec, tmp / "ours.pt"))
    return tv, ours


def _cell(syncs: list[SyncSite]) -> str:
    return f"{len(syncs)} ({sum(s.op == 'torchvision::nms' for s in syncs)})"


def _sites(syncs: list[SyncSite]) -> str:
    counts = Counter(f"{s.file}:{s.function}" for s in syncs)
    return ", ".join(f"{k} {v}" for k, v in counts.most_common())


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__, spec=False)
    parser.add_argument("--size", type=int, default=128, help="R-CNN/RetinaNet/FCOS resize (128)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated spec names to run")
    args = parser.parse_args(argv)
    only = {s for s in args.only.split(",") if s}
    rows, details = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for tv_name, spec_name, masks, resize in PAIRS:
            if only and spec_name not in only:
                continue
            tv, ours = _pair(tv_name, spec_name, args.size, resize, Path(tmp))
            images, targets = _batch(args.size, args.batch, masks)
            tv_train, tv_eval = _syncs(tv, images, targets)
            train, infer = _syncs(ours, images, targets)
            cells = " | ".join(_cell(x) for x in (tv_train, train, tv_eval, infer))
            rows.append(f"| {spec_name} | {cells} |")
            details.append(f"- {spec_name}: train: {_sites(train)}; eval: {_sites(infer)}")
    print("| spec | train step: torchvision | anchorage | eval forward: torchvision | anchorage |")
    print("|---|---:|---:|---:|---:|")
    print("\n".join(rows))
    print("\nanchorage's sync sites (file:function count):\n")
    print("\n".join(details))
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
