#!/usr/bin/env python
"""Anchor shapes from a spec's training boxes: k-means on (w, h) with 1 - IoU as distance.

Prints the mean best-anchor IoU of the boxes for the found shapes and for the spec's current
anchors, and writes spec-ready YAML (a yolo_anchors generator; shapes sorted by area and
split fine -> coarse over the levels) to --out, or prints it. Box sizes are measured in the
model's input pixels when the spec's model.preprocess has a fixed_size (else in image
pixels); crowd boxes are left out. The clustering is seeded (--seed).

example:
  tools/kmeans_anchors.py specs/yolo_shapes.yaml --k 6 --out anchors.yaml
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from anchorage.core.cli import make_parser, run_tool
from anchorage.core.errors import AnchorageError


def box_sizes(spec: Any, split: str) -> Any:
    """Float ``[N,2]`` (w, h) of the split's non-crowd boxes, in model-input pixels if fixed."""
    import torch

    from anchorage.core.data import build_dataset

    dataset = build_dataset(spec, split, transforms=False)
    fixed = _fixed_size(spec)
    sizes = []
    for boxes, crowd, (height, width) in _annotations(dataset):
        wh = (boxes[:, 2:] - boxes[:, :2])[crowd == 0]
        if fixed is not None:
            wh = wh * torch.tensor([fixed[1] / width, fixed[0] / height])
        sizes.append(wh[(wh > 0).all(dim=1)])
    return torch.cat(sizes) if sizes else torch.zeros(0, 2)


def _annotations(dataset: Any) -> Any:
    """``(boxes [N,4] xyxy, iscrowd [N], (H, W))`` per image, without decoding images if able."""
    import torch

    records = getattr(dataset, "records", None)
    if records is not None:
        for r in records:
            boxes = torch.as_tensor(r.boxes, dtype=torch.float32).reshape(-1, 4)
            yield boxes, torch.as_tensor(r.iscrowd).reshape(-1), (r.height, r.width)
        return
    for sample in dataset:
        if sample is None:
            continue
        image, target = sample
        boxes = target["boxes"].as_subclass(torch.Tensor).float().reshape(-1, 4)
        crowd = target.get("iscrowd", torch.zeros(len(boxes), dtype=torch.int64))
        yield boxes, torch.as_tensor(crowd).reshape(-1), tuple(image.shape[-2:])


def _fixed_size(spec: Any) -> tuple[int, int] | None:
    pre = spec.data.get("model", {}).get("preprocess") or {}
    fixed = pre.get("fixed_size") if isinstance(pre, dict) else None
    return None if fixed is None else (int(fixed[0]), int(fixed[1]))


def current_shapes(spec: Any) -> tuple[list[list[list[float]]] | None, str]:
    """The spec's anchor shapes per level ``[[w, h], ...]`` (None if not pixel shapes), type."""
    gen = spec.data.get("model", {}).get("anchor_generator")
    if not isinstance(gen, dict):
        return None, "none"
    built = spec.model.params["anchor_generator"].build()
    if gen.get("type") == "yolo_anchors":
        return [[list(s) for s in level] for level in built.cfg.shapes], "yolo_anchors"
    cells = getattr(built, "cell_anchors", None)  # grid_anchors: zero-centred xyxy per level
    if cells is None:
        return None, str(gen.get("type"))
    return [(c[:, 2:] - c[:, :2]).tolist() for c in cells], str(gen.get("type"))


def split_levels(shapes: list[list[float]], levels: int) -> list[list[list[float]]]:
    """Shapes sorted by area, dealt fine → coarse into ``levels`` near-equal groups."""
    n, out, start = len(shapes), [], 0
    for i in range(levels):
        stop = start + n // levels + (1 if i < n % levels else 0)
        out.append(shapes[start:stop])
        start = stop
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("spec", help="spec whose training data is clustered")
    parser.add_argument("--k", type=int, required=True, help="number of anchor shapes")
    parser.add_argument("--split", default="train", help="data split (default train)")
    parser.add_argument("--seed", type=int, default=0, help="k-means seed (default 0)")
    parser.add_argument("--levels", type=int, help="feature levels (default: the spec's)")
    parser.add_argument("--out", type=Path, help="write the anchor_generator YAML here")
    args = parser.parse_args(argv)

    import torch

    from anchorage.core import load_spec
    from anchorage.plugins.anchors.kmeans import kmeans_shapes, mean_best_iou

    spec = load_spec(args.spec, args.overrides)
    wh = box_sizes(spec, args.split)
    where = f"{spec.path}: data.{args.split}"
    if wh.shape[0] == 0:
        raise AnchorageError(f"{where}: the dataset has no boxes to cluster")
    if not 1 <= args.k <= wh.shape[0]:
        raise AnchorageError(f"--k: expected 1..{wh.shape[0]} (the number of boxes), got {args.k}")
    found = kmeans_shapes(wh, args.k, seed=args.seed)
    current, kind = current_shapes(spec)
    print(f"{wh.shape[0]} boxes from {where}")
    fit = mean_best_iou(wh, found)
    print(f"k-means (k={args.k}, seed={args.seed}): mean best-anchor IoU {fit:.4f}")
    if current is None:
        print(f"current anchors ({kind}): not pixel shapes, no comparison")
    else:
        flat = torch.tensor([s for level in current for s in level], dtype=torch.float32)
        fit = mean_best_iou(wh, flat)
        print(f"current anchors ({kind}, {len(flat)}): mean best-anchor IoU {fit:.4f}")
    levels = args.levels or (len(current) if current and kind == "yolo_anchors" else 1)
    if not 1 <= levels <= args.k:
        raise AnchorageError(
            f"--levels: expected 1..{args.k} (at most one level per shape), got {levels}"
        )
    rounded = [[round(float(w), 1), round(float(h), 1)] for w, h in found]
    text = yaml.safe_dump(
        {
            "model": {
                "anchor_generator": {
                    "type": "yolo_anchors",
                    "shapes": split_levels(rounded, levels),
                }
            }
        },
        default_flow_style=None,
        sort_keys=False,
    )
    if args.out is None:
        print(text, end="")
    else:
        args.out.write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
