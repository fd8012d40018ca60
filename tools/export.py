#!/usr/bin/env python
"""Export a trained model to ONNX or a torch.export archive, postprocess and NMS inside.

    python tools/export.py SPEC CHECKPOINT --format onnx --out model.onnx [--dynamic]
    python tools/export.py SPEC CHECKPOINT --format exported_program --out model.pt2

The graph takes ``images``: float32 [B,3,H,W], RGB in 0..1 (as read; it normalises and resizes
inside). Detectors return boxes [B,D,4] (xyxy, input pixels), scores [B,D], labels [B,D] int64
and num_detections [B] int64 (rows from num_detections on are zeros; D is the postprocessor's
detections_per_img, a set-prediction model's queries or topk); Mask R-CNN adds masks; semantic
segmenters return sem_seg [B,C+1,H,W] logits; classifiers probs [B,C] (softmax; a localizer
adds boxes [B,4], xyxy input pixels). The file carries its metadata (class names, input size,
normalisation, anchorage version, the spec and its hash): run it with ``tools/infer.py
--backend onnxruntime FILE.onnx`` or ``--backend exported_program FILE.pt2``.

Without --dynamic every dimension is fixed at the traced size (--size H,W, default the model's
input size; batch 1). --dynamic frees the batch, and height and width where the model's resize
allows (a fixed-size resize; a classifier takes any size from its smallest, the backbone's
stride + 1); the tool says which dimension stays fixed and why. The file is
written atomically: nothing is left at --out when the export fails.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from anchorage.core.cli import make_parser, run_tool
from anchorage.core.errors import AnchorageError


def parse_size(text: str) -> tuple[int, int]:
    """``H,W`` (or one number for a square) → ``(H, W)``; AnchorageError otherwise."""
    try:
        parts = [int(p) for p in text.replace("x", ",").split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 16:
        raise AnchorageError(f"--size: expected H,W (each >= 16), got {text!r}")
    return parts[0], parts[1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("spec", help="spec file (a path, or a name in the shipped specs/)")
    parser.add_argument("checkpoint", help="checkpoint file (loaded weights-only)")
    parser.add_argument("--format", required=True, choices=("onnx", "exported_program"))
    parser.add_argument("--out", required=True, help="file to write (.onnx / .pt2)")
    parser.add_argument(
        "--dynamic", action="store_true", help="free batch (and image size where allowed)"
    )
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: torch's)")
    parser.add_argument("--size", default=None, help="traced input size H,W (default: model's)")
    parser.add_argument("--batch", type=int, default=1, help="traced batch size (default 1)")
    parser.add_argument("--classes", default=None, help="comma-separated class names")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise AnchorageError(f"--out: folder {out.parent} does not exist")
    if out.is_dir():
        raise AnchorageError(f"--out: {out} is a folder; give a file name")
    if args.batch < 1:
        raise AnchorageError(f"--batch: expected >= 1, got {args.batch}")
    size = parse_size(args.size) if args.size else None

    import hashlib
    import json

    import torch

    from anchorage.core import load_spec
    from anchorage.core.data import class_names_from_spec
    from anchorage.core.deploy import export_model
    from anchorage.core.engine.evaluate import load_model
    from anchorage.core.errors import DataError

    spec = load_spec(args.spec, args.overrides)
    model = load_model(spec, args.checkpoint, torch.device("cpu"))
    if args.classes:
        names = [c.strip() for c in args.classes.split(",")]
    else:
        try:
            names = class_names_from_spec(spec)
        except DataError:
            names = []
    h, w = size or default_size(model)
    example = list(torch.rand((args.batch, 3, h, w), generator=torch.Generator().manual_seed(0)))
    text = json.dumps(spec.to_dict(), sort_keys=True, default=str)
    result = export_model(
        model,
        format=args.format,
        example=example,
        out=out,
        dynamic=args.dynamic,
        opset=args.opset,
        metadata={
            "class_names": names,
            "spec_path": str(spec.path) if spec.path else None,
            "spec": text,
            "spec_sha256": hashlib.sha256(text.encode()).hexdigest(),
        },
    )
    for dim, reason in result.fixed.items():
        print(f"note: {dim} stays fixed at {h if dim == 'height' else w}: {reason}")
    print(f"wrote {result.path} ({args.format}; outputs {', '.join(result.outputs)})")
    return 0


def default_size(model: object) -> tuple[int, int]:
    """The size a model's eval-mode resize produces for a square image (its natural input)."""
    info = model.export_info() if callable(getattr(model, "export_info", None)) else {}
    resize = info.get("resize") or {}
    if "fixed_size" in resize:
        return tuple(resize["fixed_size"])
    if "min_size" in resize:
        return resize["min_size"], resize["min_size"]
    return 128, 128


if __name__ == "__main__":
    sys.exit(run_tool(main))
