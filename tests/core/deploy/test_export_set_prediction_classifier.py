"""Exported set-prediction detectors (DETR, Deformable DETR) and classifiers (``classifier``,
``localizer``) give the eager model's numbers: ONNX Runtime (CPU) and the loaded
ExportedProgram against ``model.eval()(images)`` on two images of different sizes, random
initialisation (no trained weights ship with the repository), with test_export_parity.py's
tolerances and near-tie rule (the tools' round trip: tests/tools/test_export_classifier_detr.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
import onnx  # noqa: E402

from anchorage.core import build_model, load_spec  # noqa: E402
from anchorage.core.deploy import export_model, load_exported  # noqa: E402
from anchorage.core.deploy.graph import CLASSIFICATION_OUTPUTS, LOCALIZATION_OUTPUTS  # noqa: E402

from .test_export_parity import BOX_ATOL, SCORE_ATOL, SIZES, _compare, _images  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
PROB_ATOL = 1e-4
BACKENDS = (("exported_program", "exported_program", "pt2"), ("onnxruntime", "onnx", "onnx"))
SPECS = {
    "detr": "detr_r18_shapes.yaml",
    "deformable_detr": "deformable_detr_r18_shapes.yaml",
    "classifier": "resnet18_cells.yaml",
    "localizer": "localizer_r18_shapes.yaml",
}


def _model(name: str, overrides: tuple[str, ...] = ()) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(load_spec(str(ROOT / "specs" / SPECS[name]), overrides=list(overrides)))
    if name == "localizer":  # the box head's last layer starts at zero (every box the centred
        # half-size one): random weights, so that the boxes follow the image
        last = [m for m in model.box_head.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.weight.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(3))
    return model.eval()


def _exported(
    model: torch.nn.Module, name: str, tmp_path: Path, size: tuple[int, int] = (96, 80)
) -> dict[str, object]:
    """backend → the model exported (``dynamic``, traced at ``size``) and loaded with it."""
    runners = {}
    fixed = model.export_info()["fixed_size_reason"] is not None
    for backend, fmt, suffix in BACKENDS:
        path = tmp_path / f"{name}_{size[0]}.{suffix}"
        done = export_model(
            model, format=fmt, example=[torch.rand(3, *size)], out=path, dynamic=True
        )
        assert bool(done.fixed) == fixed  # batch free; height and width too unless fixed
        if fmt == "onnx":
            onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        runners[backend] = load_exported(path, backend)
    return runners


@pytest.mark.slow
@pytest.mark.parametrize("name", ["detr", "deformable_detr"])
def test_set_prediction_export_equals_eager(name: str, tmp_path: Path) -> None:
    model = _model(name)
    info = model.export_info()
    assert info["task"] == "detection" and info["fixed_size_reason"] is None  # fixed_size resize
    images = _images()
    with torch.no_grad():
        eager = [model([im])[0] for im in images]
    for backend, runner in _exported(model, name, tmp_path).items():
        got = runner(images)  # one size per call: the two images run one at a time
        diffs = [_compare(g, e) for g, e in zip(got, eager)]
        batch = runner.forward_batch(torch.stack([images[0]] * 2))
        assert batch["boxes"].shape[:2] == (2, len(eager[0]["scores"]))  # the batch is free
        print(f"{name} {backend}: max abs box diff {max(diffs):.3g}")


PADDED = (  # COCO-style aspect-keeping resize: a fixed H x W, and size_divisible padding
    "model.preprocess.fixed_size=null",
    "model.preprocess.min_size=[64]",
    "model.preprocess.max_size=96",
    "model.preprocess.size_divisible=32",
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, backends", [("detr", BACKENDS), ("deformable_detr", BACKENDS[:1])]
)  # deformable's ONNX export takes ~1.5 min a size; its padding-free ONNX run is above
def test_set_prediction_export_with_padding_equals_eager(
    name: str, backends: tuple, tmp_path: Path
) -> None:
    """Resized to 76x64 and 64x73, padded to 96x64 and 64x96: the graph's padding mask (one
    size for the batch) is eager mode's, so the detections are the same."""
    model = _model(name, PADDED)
    assert "aspect-keeping resize" in model.export_info()["fixed_size_reason"]
    images = _images()
    with torch.no_grad():
        eager = [model([im])[0] for im in images]
    for backend, fmt, suffix in backends:
        diffs = []
        for image, want in zip(images, eager):
            path = tmp_path / f"{name}_{image.shape[1]}.{suffix}"
            done = export_model(model, format=fmt, example=[image], out=path, dynamic=True)
            assert set(done.fixed) == {"height", "width"}
            runner = load_exported(path, backend)
            diffs.append(_compare(runner([image])[0], want))
            assert runner.forward_batch(torch.stack([image] * 2))["scores"].shape[0] == 2
        print(f"{name} padded {backend}: max abs box diff {max(diffs):.3g}")


def _compare_classes(
    got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]
) -> tuple[float, float]:
    """Assert one image's classifier (or localizer) outputs agree; the largest absolute
    differences of the probabilities and of the boxes (0 without boxes)."""
    assert sorted(got) == sorted(want)
    assert got["labels"].tolist() == want["labels"].tolist()
    torch.testing.assert_close(got["scores"], want["scores"], atol=SCORE_ATOL, rtol=0)
    torch.testing.assert_close(got["probs"], want["probs"], atol=PROB_ATOL, rtol=0)
    box = 0.0
    if "boxes" in want:
        torch.testing.assert_close(got["boxes"], want["boxes"], atol=BOX_ATOL, rtol=0)
        box = float((got["boxes"] - want["boxes"]).abs().max())
    return float((got["probs"] - want["probs"]).abs().max()), box


CLASSIFIER_CASES = {
    "classifier": ("classifier", ()),
    "classifier_sized": ("classifier", ("model.image_size=[48,40]",)),  # resized in the graph
    "localizer": ("localizer", ()),  # H x W fixed: its box head pools to a grid
    "localizer_sized": ("localizer", ("model.image_size=[64,64]",)),
}
SLOW_CLASSIFIER_CASES = {"classifier_sized", "localizer_sized"}


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_CLASSIFIER_CASES else c
     for c in CLASSIFIER_CASES],
)  # fmt: skip
def test_classifier_export_equals_eager(case: str, tmp_path: Path) -> None:
    name, overrides = CLASSIFIER_CASES[case]
    model = _model(name, overrides)
    info = model.export_info()
    assert info["task"] == "classification"
    fixed = info["fixed_size_reason"] is not None
    assert fixed == (case == "localizer")
    images = _images()
    with torch.no_grad():
        eager = [model([im])[0] for im in images]
    assert len(eager[0]["labels"]) == (1 if name == "localizer" else 3)  # cells: top 3 of 3
    if name == "localizer":
        assert (eager[0]["boxes"] - eager[1]["boxes"]).abs().max() > 1.0  # not a constant box
    outputs = LOCALIZATION_OUTPUTS if name == "localizer" else CLASSIFICATION_OUTPUTS
    diffs: dict[str, list[tuple[float, float]]] = {}
    for size in SIZES if fixed else SIZES[:1]:  # a fixed H x W: one file per size
        for backend, runner in _exported(model, case, tmp_path, size).items():
            assert tuple(runner.metadata["outputs"]) == outputs
            pairs = [(im, e) for im, e in zip(images, eager) if not fixed or im.shape[1:] == size]
            got = runner([im for im, _ in pairs])
            diffs.setdefault(backend, []).extend(
                _compare_classes(g, e) for g, (_, e) in zip(got, pairs)
            )
            batch = runner.forward_batch(torch.stack([pairs[0][0]] * 3))
            assert batch["probs"].shape == (3, model.num_classes)  # the batch is free
    for backend, found in diffs.items():
        probs, boxes = (max(d) for d in zip(*found))
        print(f"{case} {backend}: max abs diff probs {probs:.3g}, boxes {boxes:.3g} px")


def test_classifier_refuses_images_under_its_min_side(tmp_path: Path) -> None:
    from anchorage.core.errors import DataError

    model = _model("classifier")
    assert model.export_info()["min_side"] == 33  # ResNet-18: stride 32, maps of 2+ pixels
    out = tmp_path / "m.pt2"
    export_model(model, format="exported_program", example=[torch.rand(3, 64, 64)], out=out,
                 dynamic=True)  # fmt: skip
    runner = load_exported(out, "exported_program")
    assert runner.metadata["input"]["min_side"] == 33
    with pytest.raises(DataError, match="at least 33 pixels"):
        runner([torch.rand(3, 32, 64)])
    from anchorage.core.deploy.export import ExportError

    with pytest.raises(ExportError, match="at least 33 pixels, got 24x64"):
        export_model(model, format="exported_program", example=[torch.rand(3, 24, 64)],
                     out=tmp_path / "small.pt2", dynamic=True)  # fmt: skip
