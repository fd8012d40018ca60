"""level_topk_nms: per-level threshold and per-image top-k, background column, empty input."""

import math

import pytest
import torch

from anchorage.core import build_component
from anchorage.core.interfaces import Anchors

CODER = build_component("box_coder", {"type": "delta_xywh", "weights": (1.0, 1.0, 1.0, 1.0)})


def _inputs(logits: torch.Tensor):
    a = logits.shape[1]
    xy = torch.arange(a, dtype=torch.float32)[:, None] * 20
    boxes = torch.cat([xy, xy, xy + 10, xy + 10], 1)  # disjoint: NMS removes nothing
    preds = {"cls_logits": logits, "bbox_deltas": torch.zeros(logits.shape[0], a, 4)}
    return preds, Anchors(boxes, (a,), (8,))


def test_per_image_topk_and_background_column():
    post = build_component(
        "postprocessor",
        box_coder=CODER,
        data={
            "type": "level_topk_nms",
            "topk_candidates": 2,
            "score_thresh": 0.5,
            "background_column": True,
        },
    )
    logits = torch.full((2, 5, 3), -9.0)
    logits[0, :, 2] = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])  # five candidates of label 2
    logits[0, :, 0] = 9.0  # the background column never becomes a detection
    logits[1, 3, 1] = 1.0  # one candidate of label 1
    preds, anchors = _inputs(logits)
    out = post(preds, anchors, [(200, 200), (200, 200)])
    assert out[0]["labels"].tolist() == [2, 2]
    torch.testing.assert_close(out[0]["scores"], torch.sigmoid(torch.tensor([5.0, 4.0])))
    assert out[0]["boxes"][0].tolist() == [80.0, 80.0, 90.0, 90.0]
    assert (
        out[1]["labels"].tolist() == [1] and out[1]["boxes"][0].tolist() == [60.0] * 2 + [70.0] * 2
    )


def test_nothing_above_threshold_gives_empty_results():
    post = build_component(
        "postprocessor", {"type": "level_topk_nms", "score_thresh": 0.5}, box_coder=CODER
    )
    preds, anchors = _inputs(torch.full((2, 5, 3), -9.0))
    for det in post(preds, anchors, [(100, 100)] * 2):
        assert det["boxes"].shape == (0, 4) and det["scores"].shape == (0,)


@pytest.mark.parametrize("centerness", [False, True])
def test_logit_threshold_equals_thresholding_every_score(centerness: bool):
    """The threshold is tested on logits first: the survivors must be exactly those of
    thresholding every score (σ, or sqrt(σ(cls)·σ(ctr))), then each level's per-image top-k."""
    g = torch.Generator().manual_seed(3)
    b, counts, c, k, thresh = 2, (30, 12), 3, 7, 0.3
    logits = torch.randn(b, sum(counts), c, generator=g) * 2 - 1
    logits[0, 0, 0] = math.log(thresh / (1 - thresh))  # on the threshold: σ rounds to it
    ctr = torch.randn(b, sum(counts), 1, generator=g)
    preds, anchors = _inputs(logits)
    anchors = Anchors(anchors.boxes, counts, (8, 16))
    preds["centerness"] = ctr
    post = build_component(
        "postprocessor",
        box_coder=CODER,
        data={
            "type": "level_topk_nms",
            "score_thresh": thresh,
            "topk_candidates": k,
            "detections_per_img": 1000,
            "centerness": centerness,
        },
    )
    out = post(preds, anchors, [(2000, 2000)] * b)
    scores = logits.sigmoid()
    if centerness:
        scores = torch.sqrt(scores * ctr.sigmoid())
    for i in range(b):
        expected = []
        for level in scores[i].split(counts):
            flat = level.flatten()
            kept = flat[flat > thresh]
            expected += kept.topk(min(k, len(kept))).values.tolist()
        assert sorted(out[i]["scores"].tolist()) == sorted(expected)
