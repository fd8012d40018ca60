"""two_stage on small inputs: I/O contract, bad inputs (crowd-only, degenerate or no
proposals, wrong mask sizes), Fast R-CNN without an RPN, torchvision weight conversion."""

from __future__ import annotations

import copy

import pytest
import torch

from anchorage.core import build_component, load_spec
from anchorage.core.errors import DataError
from anchorage.core.registry import MODELS

TINY = copy.deepcopy(MODELS.get("two_stage").examples[0])
MASK = {
    "roi_extractor": {"type": "multiscale_roi_align", "output_size": 4},
    "head": {"type": "mask_head", "layers": [8], "dim_reduced": 8},
    "loss": {"type": "mask_rcnn_loss"},
    "paste": {"type": "mask_paste"},
}


def _model(**changes: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_component("model", {"type": "two_stage", **TINY, **changes})


def _images() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, 60, 80, generator=g), torch.rand(3, 72, 50, generator=g)]


def _targets(masks: bool = False) -> list[dict]:
    out = [
        {
            "boxes": torch.tensor([[5.0, 6, 40, 44], [30, 10, 70, 50]]),
            "labels": torch.tensor([1, 2]),
        },
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    if masks:
        out[0]["masks"] = torch.zeros(2, 60, 80, dtype=torch.uint8)
        out[0]["masks"][0, 10:40, 8:38] = 1
        out[0]["masks"][1, 12:48, 32:68] = 1
        out[1]["masks"] = torch.zeros(0, 72, 50, dtype=torch.uint8)
    return out


def _finite(losses: dict) -> None:
    assert losses and all(k.startswith("loss_") for k in losses)
    total = sum(losses.values())
    assert torch.isfinite(total), losses
    total.backward()


def test_train_and_eval_io_with_masks() -> None:
    model = _model(roi_mask=MASK)
    model.train()
    losses = model(_images(), _targets(masks=True))
    assert set(losses) == {
        "loss_objectness",
        "loss_rpn_box_reg",
        "loss_classifier",
        "loss_box_reg",
        "loss_mask",
    }
    _finite(losses)
    model.eval()
    with torch.no_grad():
        out = model(_images())
    for r, (h, w) in zip(out, [(60, 80), (72, 50)]):
        k = len(r["boxes"])
        assert (
            r["boxes"].shape == (k, 4)
            and r["scores"].shape == (k,)
            and r["labels"].dtype == torch.int64
        )
        assert r["masks"].shape == (k, 1, h, w)
        assert (r["boxes"][:, 2] <= w).all() and (r["boxes"][:, 3] <= h).all()
        assert ((r["labels"] >= 1) & (r["labels"] <= 2)).all()


def test_every_gt_crowd_gives_finite_losses() -> None:
    model = _model()
    model.train()
    targets = _targets()
    targets[0]["iscrowd"] = torch.ones(2, dtype=torch.int64)
    targets[1]["iscrowd"] = torch.zeros(0, dtype=torch.int64)
    losses = model(_images(), targets)
    _finite(losses)
    # no positive: nothing is matched to a crowd box
    assert float(losses["loss_box_reg"].detach()) == 0


def test_mask_of_wrong_size_is_a_data_error() -> None:
    model = _model(roi_mask=MASK)
    model.train()
    targets = _targets(masks=True)
    targets[0]["masks"] = targets[0]["masks"][:, :30]
    with pytest.raises(DataError, match=r"targets\[0\]\['masks'\]"):
        model(_images(), targets)
    targets = _targets(masks=True)
    del targets[1]["masks"]
    with pytest.raises(DataError, match="masks"):
        model(_images(), targets)


def test_labels_out_of_range_are_a_data_error() -> None:
    model = _model()
    model.train()
    targets = _targets()
    targets[0]["labels"] = torch.tensor([1, 3])  # num_classes is 2
    with pytest.raises(DataError, match=r"1\.\.2"):
        model(_images(), targets)
    targets[0]["labels"] = torch.tensor([1])
    with pytest.raises(DataError, match="2 boxes but 1 labels"):
        model(_images(), targets)


def _fast_rcnn() -> torch.nn.Module:
    return _model(rpn=None)


def test_fast_rcnn_degenerate_and_empty_proposals() -> None:
    model = _fast_rcnn()
    model.train()
    targets = _targets()
    targets[0]["proposals"] = torch.tensor(
        [
            [10.0, 10, 10, 30],
            [50, 40, 20, 10],
            [-30, -30, -10, -10],
            [5, 6, 41, 44],
            [0, 0, 200, 200],
        ]
    )
    targets[1]["proposals"] = torch.zeros(0, 4)
    _finite(model(_images(), targets))
    targets[0]["proposals"] = torch.zeros(0, 4)
    _finite(model(_images(), targets))  # only the gt boxes are left to sample
    model.eval()
    with torch.no_grad():
        out = model(_images(), targets)
    assert all(r["boxes"].shape == (0, 4) and r["scores"].shape == (0,) for r in out)


def test_fast_rcnn_without_proposals_is_a_data_error() -> None:
    model = _fast_rcnn()
    model.eval()
    with pytest.raises(DataError, match="proposals"):
        model(_images())


def test_fast_rcnn_proposals_file(tmp_path) -> None:
    path = tmp_path / "proposals.pt"
    torch.save({7: torch.tensor([[5.0, 6, 40, 44], [1, 1, 20, 20]]), 8: torch.zeros(0, 4)}, path)
    model = _model(rpn=None, proposals_file=str(path))
    model.eval()
    targets = [{**t, "image_id": i} for t, i in zip(_targets(), (7, 8))]
    with torch.no_grad():
        out = model(_images(), targets)
    assert len(out[0]["boxes"]) > 0 and len(out[1]["boxes"]) == 0
    targets[1]["image_id"] = 9
    with pytest.raises(DataError, match="image_id 9"):
        model(_images(), targets)


def test_fast_rcnn_vgg16_spec_builds_and_trains() -> None:
    spec = load_spec(
        "specs/fast_rcnn_vgg16_roipool.yaml",
        overrides=[
            "model.preprocess.min_size=[64]",
            "model.preprocess.max_size=96",
            "model.roi_box.head.representation_size=16",
        ],
    )
    model = spec.model.build()
    assert model.rpn is None and model.neck is None
    model.train()
    targets = _targets()
    for t in targets:
        t["proposals"] = torch.tensor([[4.0, 4, 40, 40], [20, 20, 48, 60]])
    _finite(model(_images(), targets))
