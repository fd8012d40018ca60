"""Exported graphs give the eager model's numbers: ONNX Runtime (CPU) and the loaded
ExportedProgram against ``model.eval()(images)``, per family, on two images of different
sizes, with randomly initialised models whose score threshold is lowered to 0 so that every
image has detections (no trained weights ship with the repository)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
import onnx  # noqa: E402

from anchorage.core import build_model, load_spec  # noqa: E402
from anchorage.core.deploy import export_model, load_exported  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
SIZES = ((96, 80), (112, 128))
BOX_ATOL = 1e-4  # pixels: the target of every family and backend, except the gaps below
SCORE_ATOL = 1e-4
BOX_GAPS = {
    # Known misses of the 1e-4 target, each with its measured size, kept tight so a worse
    # export fails: ONNX Runtime's convolutions round differently from PyTorch's and the box
    # decoding's exp amplifies it (2.5e-4 to 2.7e-4 px measured on boxes up to 128 px, with
    # and without ORT's graph optimisations; ~2e-6 of the box size).
    ("retinanet", "onnxruntime"): 4e-4,
}

FAMILIES = {
    "tiny_ssd": ("tiny_ssd_shapes.yaml", ["model.postprocessor.score_thresh=0.0"]),
    "retinanet": ("retinanet_r18_fpn_shapes.yaml", ["model.postprocessor.score_thresh=0.0"]),
    "fcos": ("fcos_r18_fpn_shapes.yaml", ["model.postprocessor.score_thresh=0.0"]),
    "yolo": ("yolo_shapes.yaml", ["model.postprocessor.score_thresh=0.0"]),
    # VGG-16 at 300x300 (torchvision's SSD300 layout), 3 classes to keep the head small
    "ssd300": (
        "ssd300_vgg16_coco.yaml",
        ["model.num_classes=3", "model.postprocessor.score_thresh=0.0"],
    ),
    # two-stage: the RPN's proposals, RoIAlign over FPN levels, per-class NMS in the graph
    "faster_rcnn": (
        "faster_rcnn_r18_fpn_bccd.yaml",
        [
            "model.preprocess.min_size=[128]",
            "model.preprocess.max_size=160",
            "model.roi_box.postprocessor.score_thresh=0.0",
        ],
    ),
    "mask_rcnn": (
        "mask_rcnn_r18_fpn_shapes.yaml",
        ["model.roi_box.postprocessor.score_thresh=0.0"],
    ),
    "fcn": ("fcn_r18_shapes.yaml", []),
    "unet": ("unet_shapes.yaml", []),
}
NEAR_TIE = 1e-5  # scores closer than this (~4x the measured float32 noise, 2.5e-6) may swap
HEAD_SCALE = 0.1  # ssd300: logits and deltas of std ~0.3-0.4, as a trained head's
MASK_ATOL = 1e-3  # mask probabilities
SLOW = {"retinanet", "fcos", "yolo", "ssd300", "faster_rcnn", "mask_rcnn", "fcn", "unet"}


def _model(family: str) -> torch.nn.Module:
    name, overrides = FAMILIES[family]
    torch.manual_seed(0)
    model = build_model(load_spec(str(ROOT / "specs" / name), overrides=overrides)).eval()
    if family == "yolo":  # prior-initialised, it scores every box ~1e-4, and its random
        # features vary little from place to place (std ~1e-3), so the scores of one channel
        # agree to a few float32 ulps and ONNX Runtime's rounding (~1 ulp) reorders them:
        # spread the biases over the channels and the score channels' weights over the places
        # (the box channels' too would scale the boxes' rounding; exact ties: test_ties.py)
        gen = torch.Generator().manual_seed(2)
        with torch.no_grad():
            for pred in model.head.preds:
                pred.bias.normal_(0.0, 0.5, generator=gen)
                scores = torch.arange(pred.out_channels) % model.head.num_outputs >= 4
                pred.weight[scores] = torch.randn(pred.weight[scores].shape, generator=gen) * 10
    if family == "ssd300":  # VGG-16's random features reach ~3 on 0..255 input: logits and
        # deltas of std ~3-4 saturate the softmax (scores 0.99999x, near-ties a float32 ulp
        # apart that NMS visits in another order) and push the boxes off the image
        with torch.no_grad():
            for conv in [*model.head.cls_convs, *model.head.box_convs]:
                conv.weight.mul_(HEAD_SCALE)
    return model


def _images() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.rand((3, h, w), generator=gen) for h, w in SIZES]


def _near_ties_aligned(
    got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], box_atol: float
) -> dict[str, torch.Tensor]:
    """``got`` with its detections reordered within each run of eager detections whose
    scores lie within ``NEAR_TIE`` of the next (their order is float32 rounding's: eager in
    float64 orders them otherwise too), each matched to the equal one (label, box, score) of
    that run; everything else stays in place, and an unmatched detection stays for the
    asserts to report."""
    n = len(want["scores"])
    if len(got["scores"]) != n:
        return got
    order = list(range(n))
    s = want["scores"].tolist()
    lo = 0
    for hi in range(1, n + 1):
        if hi < n and s[hi - 1] - s[hi] < NEAR_TIE:
            continue
        free = list(range(lo, hi))
        for j in range(lo, hi):
            same = [
                i for i in free
                if got["labels"][i] == want["labels"][j]
                and abs(float(got["scores"][i] - want["scores"][j])) <= SCORE_ATOL
                and float((got["boxes"][i] - want["boxes"][j]).abs().max()) <= box_atol
            ]  # fmt: skip
            if same:
                order[j] = same[0]
                free.remove(same[0])
        lo = hi
    if len(set(order)) != n:  # a run that does not match one to one: leave it to the asserts
        return got
    return {k: v[order] for k, v in got.items()}


def _compare(
    got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], box_atol: float = BOX_ATOL
) -> float:
    """Assert one image's outputs agree; return the largest absolute difference."""
    if "sem_seg" in want:
        torch.testing.assert_close(got["sem_seg"], want["sem_seg"], atol=1e-4, rtol=1e-5)
        return float((got["sem_seg"] - want["sem_seg"]).abs().max())
    assert len(want["boxes"]) > 0, "the eager model detects nothing: parity would be vacuous"
    got = _near_ties_aligned(got, want, box_atol)
    assert got["labels"].tolist() == want["labels"].tolist()
    torch.testing.assert_close(got["scores"], want["scores"], atol=SCORE_ATOL, rtol=0)
    torch.testing.assert_close(got["boxes"], want["boxes"], atol=box_atol, rtol=0)
    if "masks" in want:
        torch.testing.assert_close(got["masks"], want["masks"], atol=MASK_ATOL, rtol=0)
    return float((got["boxes"] - want["boxes"]).abs().max())


def _parity(family: str, tmp_path: Path) -> None:
    model = _model(family)
    images = _images()
    with torch.no_grad():
        eager = [model([im])[0] for im in images]
    fixed = model.export_info()["fixed_size_reason"] is not None
    # a model whose input size is fixed at export (tiled segmenters): one file per size
    sizes = SIZES if fixed else SIZES[:1]
    for backend, fmt, suffix in (
        ("exported_program", "exported_program", "pt2"), ("onnxruntime", "onnx", "onnx"),
    ):  # fmt: skip
        diffs = []
        for size in sizes:
            path = tmp_path / f"{family}_{size[0]}.{suffix}"
            done = export_model(
                model, format=fmt, example=[torch.rand(3, *size)], out=path, dynamic=True
            )
            assert bool(done.fixed) == fixed
            if fmt == "onnx":
                onnx.checker.check_model(onnx.load(str(path)), full_check=True)
            runner = load_exported(path, backend)
            pairs = [(im, e) for im, e in zip(images, eager) if not fixed or im.shape[1:] == size]
            got = runner([im for im, _ in pairs])  # one size per call
            atol = BOX_GAPS.get((family, backend), BOX_ATOL)
            diffs += [_compare(g, e, atol) for g, (_, e) in zip(got, pairs)]
            batch = runner.forward_batch(torch.stack([pairs[0][0]] * 2))
            assert next(iter(batch.values())).shape[0] == 2  # the batch is free
        print(f"{family} {backend}: max abs diff {max(diffs):.3g}")


@pytest.mark.parametrize(
    "family",
    [pytest.param(f, marks=pytest.mark.slow) if f in SLOW else f for f in FAMILIES],
)
def test_exported_graph_equals_eager(family: str, tmp_path: Path) -> None:
    _parity(family, tmp_path)


def test_wrong_dtype_or_channels_is_one_line(tmp_path: Path) -> None:
    from anchorage.core.errors import DataError

    model = _model("tiny_ssd")
    out = tmp_path / "m.pt2"
    export_model(model, format="exported_program", example=[torch.rand(3, 64, 64)], out=out)
    runner = load_exported(out, "exported_program")
    with pytest.raises(DataError, match="float32"):
        runner([torch.zeros(3, 64, 64, dtype=torch.uint8)])
    with pytest.raises(DataError, match=r"\[B,3,H,W\]"):
        runner.forward_batch(torch.zeros(1, 1, 64, 64))
    with pytest.raises(DataError, match="height is fixed at 64"):
        runner([torch.rand(3, 80, 64)])


def test_two_stage_without_rpn_is_refused(tmp_path: Path) -> None:
    from anchorage.core.errors import AnchorageError

    spec = load_spec(
        str(ROOT / "specs" / "mask_rcnn_r18_fpn_shapes.yaml"),
        overrides=["model.rpn=null", "model.roi_mask=null"],
    )
    model = build_model(spec).eval()
    out = tmp_path / "m.onnx"
    with pytest.raises(AnchorageError, match="without an rpn .* reads its proposals from the data"):
        export_model(model, format="onnx", example=[torch.rand(3, 64, 64)], out=out)
    assert not out.exists() and not list(tmp_path.iterdir())
