#!/usr/bin/env python
"""Benchmark: operator calls per eval forward (torch.profiler), anchorage vs torchvision twin.

Faster R-CNN R50-FPN (``specs/faster_rcnn_r50_fpn_coco.yaml`` with torchvision's converted
weights, fine-tuning layout) and torchvision's ``fasterrcnn_resnet50_fpn``, both resizing to
``--size`` pixels, one forward on a batch of ``--batch`` random images after a warm-up one.
Counts every ``aten::`` / ``torchvision::`` event (nested ones included: a convolution counts
its inner calls too) and the host-synchronising kinds among them on a GPU (``nonzero``,
``_local_scalar_dense`` = ``.item()``, boolean-mask ``index``-es are inside ``index``).

example:
  python benchmarks/op_counts.py --size 128 --batch 8
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence

import torch
from torch.profiler import ProfilerActivity, profile

from anchorage.benchmarking.entries import build_torchvision
from anchorage.core import build_model, load_spec
from anchorage.core.cli import make_parser, run_tool
from anchorage.plugins.models.convert_rcnn import convert_torchvision_rcnn

SYNCING = ("aten::nonzero", "aten::_local_scalar_dense", "aten::item")


def count(model: torch.nn.Module, images: list[torch.Tensor]) -> Counter:
    """Calls per operator name in one ``model(images)`` under no_grad."""
    with torch.no_grad():
        model(images)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(images)
    return Counter({e.key: e.count for e in prof.key_averages()})


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__, spec=False)
    parser.add_argument("--size", type=int, default=128, help="min_size = max_size (128)")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    s = args.size
    tv = build_torchvision(
        "fasterrcnn_resnet50_fpn", {"pretrained_layout": True, "min_size": s, "max_size": s}
    ).eval()
    spec = load_spec(
        "specs/faster_rcnn_r50_fpn_coco.yaml",
        [f"model.preprocess.min_size=[{s}]", f"model.preprocess.max_size={s}"],
    )
    ours = build_model(spec).eval()
    ours.load_state_dict(convert_torchvision_rcnn(tv.state_dict()), strict=True)
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, s, s, generator=g) for _ in range(args.batch)]
    rows = []
    for name, model in (("torchvision", tv), ("anchorage", ours)):
        c = count(model, images)
        ops = {k: v for k, v in c.items() if k.startswith(("aten::", "torchvision::"))}
        sync = sum(c.get(k, 0) for k in SYNCING)
        top = ", ".join(f"{k} {v}" for k, v in Counter(ops).most_common(4))
        rows.append(
            f"| {name} | {sum(ops.values())} | {sync} | {c.get('aten::index', 0)} | {top} |"
        )
    print("| model | aten+torchvision calls | nonzero+item | index | most called |")
    print("|---|---:|---:|---:|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
