"""rpn_proposals, rcnn_detections and mask_paste against torchvision's implementations."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.roi_heads import RoIHeads, paste_masks_in_image
from torchvision.models.detection.rpn import RegionProposalNetwork

from anchorage.core.build import build_component
from anchorage.core.host_sync import record_host_syncs
from anchorage.core.interfaces import Anchors
from anchorage.plugins.postprocess.mask_paste import paste_masks_batched


def _rpn_inputs(b: int = 2, counts: tuple[int, ...] = (1200, 300, 80)) -> tuple:
    """Objectness ``[B,A]``, box deltas ``[B,A,4]`` at ``Anchors`` of ``counts`` levels, and the
    boxes torchvision's RPN decodes from them (``BoxCoder((1, 1, 1, 1))``) before
    ``filter_proposals``."""
    g = torch.Generator().manual_seed(0)
    a = sum(counts)
    xy = torch.rand(a, 2, generator=g) * 180 - 10
    anchors = torch.cat([xy, xy + 4 + torch.rand(a, 2, generator=g) * 60], -1)
    deltas = torch.randn(b, a, 4, generator=g) * 0.2
    deltas[0, :5, 2:] = -50.0  # (almost) zero-size boxes are dropped
    boxes = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode_single(
        deltas.reshape(-1, 4), anchors.repeat(b, 1)
    )
    strides = tuple(8 * 2**i for i in range(len(counts)))
    levels = Anchors(anchors, counts, strides)
    return torch.randn(b, a, generator=g), deltas, levels, boxes.view(b, a, 4), list(counts)


def _proposals(**params: object) -> object:
    coder = build_component("box_coder", {"type": "delta_xywh", "weights": (1.0, 1.0, 1.0, 1.0)})
    spec = {"type": "rpn_proposals", **params}
    return build_component("postprocessor", spec, box_coder=coder)


def test_rpn_proposals_equal_torchvision_filter_proposals() -> None:
    objectness, deltas, anchors, boxes, counts = _rpn_inputs()
    sizes = [(160, 150), (120, 170)]
    for training in (False, True):
        ours = _proposals(
            pre_nms_top_n_test=500,
            post_nms_top_n_test=300,
            pre_nms_top_n_train=900,
            post_nms_top_n_train=700,
            nms_thresh=0.6,
        )
        tv = RegionProposalNetwork(
            None,
            None,
            0.7,
            0.3,
            256,
            0.5,
            {"training": 900, "testing": 500},
            {"training": 700, "testing": 300},
            0.6,
        )
        tv.train(training)
        exp_boxes, exp_scores = tv.filter_proposals(boxes, objectness, sizes, counts)
        predictions = {"objectness": objectness, "bbox_deltas": deltas}
        got = ours(predictions, anchors, sizes, training=training)
        for e_b, e_s, g in zip(exp_boxes, exp_scores, got):
            assert len(e_b) > 0
            torch.testing.assert_close(g["boxes"], e_b)
            torch.testing.assert_close(g["scores"], e_s)


def test_rpn_proposals_empty_image() -> None:
    objectness, deltas, anchors, _, _ = _rpn_inputs(b=2, counts=(50,))
    deltas[1, :, 2:] = -50.0  # every box of image 1 is (almost) zero-size
    got = _proposals()({"objectness": objectness, "bbox_deltas": deltas}, anchors, [(200, 200)] * 2)
    assert len(got[0]["boxes"]) > 0 and got[1]["boxes"].shape == (0, 4)


@pytest.mark.parametrize(
    ("counts", "scale", "thresh", "dets"),
    [
        ((60, 35), 2.0, 0.1, 30),  # few candidates: torchvision's coordinate-trick NMS
        ((900, 0, 250), 4.0, 0.05, 100),  # > 1000 per image: its per-class loop; empty image
        ((300, 280), 4.0, 0.01, 7),  # the top-k cut decides
    ],
)
def test_rcnn_detections_equal_torchvision_postprocess(
    counts: tuple[int, ...], scale: float, thresh: float, dets: int
) -> None:
    g = torch.Generator().manual_seed(0)
    c1, sizes = 6, [(100, 120), (90, 80), (64, 64)][: len(counts)]
    props = []
    for n in counts:
        xy = torch.rand(n, 2, generator=g) * 70
        p = torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=g) * 40], -1)
        p[:3, 2] = p[:3, 0]  # zero-width proposals decode to boxes below min_size
        props.append(p)
    logits = torch.randn(sum(counts), c1, generator=g) * scale
    deltas = torch.randn(sum(counts), c1 * 4, generator=g)
    tv = RoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, None, thresh, 0.5, dets)
    e_boxes, e_scores, e_labels = tv.postprocess_detections(logits, deltas, props, sizes)
    ours = build_component(
        "postprocessor",
        {"type": "rcnn_detections", "score_thresh": thresh, "detections_per_img": dets},
        box_coder=build_component("box_coder", {"type": "delta_xywh"}),
    )
    pad = torch.nn.utils.rnn.pad_sequence
    preds = {
        "cls_logits": pad(list(logits.split(counts)), batch_first=True),
        "bbox_deltas": pad(list(deltas.split(counts)), batch_first=True),
        "valid": pad([torch.ones(n, dtype=torch.bool) for n in counts], batch_first=True),
    }
    got = ours(preds, Anchors.single_level(pad(props, batch_first=True)), sizes)
    assert len(got) == len(counts)
    for b, s, lab, r, n in zip(e_boxes, e_scores, e_labels, got, counts):
        assert (len(b) > 0) == (n > 0)
        assert r["labels"].dtype == torch.int64
        torch.testing.assert_close(r["boxes"], b)
        torch.testing.assert_close(r["scores"], s)
        assert torch.equal(r["labels"], lab)
    if dets < 10:  # the per-image cut is exercised
        assert [len(r["boxes"]) for r in got] == [dets] * len(counts)


def test_rcnn_detections_no_foreground_class_and_no_proposal() -> None:
    coder = build_component("box_coder", {"type": "delta_xywh"})
    ours = build_component("postprocessor", {"type": "rcnn_detections"}, box_coder=coder)
    for r, c1 in ((0, 4), (5, 1)):
        preds = {
            "cls_logits": torch.zeros(2, r, c1),
            "bbox_deltas": torch.zeros(2, r, c1 * 4),
            "valid": torch.ones(2, r, dtype=torch.bool),
        }
        got = ours(preds, Anchors.single_level(torch.zeros(2, r, 4)), [(10, 10), (10, 10)])
        assert [tuple(d["boxes"].shape) for d in got] == [(0, 4), (0, 4)]


def test_mask_paste_equals_torchvision() -> None:
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(3, 1, 28, 28, generator=g)
    boxes = torch.tensor([[5.0, 6, 40, 30], [-5, 10, 20, 70], [50, 50, 64, 80]])
    paste = build_component("postprocessor", {"type": "mask_paste"})
    out = paste(
        [{"masks": masks, "boxes": boxes}, {"masks": masks[:0], "boxes": boxes[:0]}],
        [(60, 64), (10, 12)],
    )
    torch.testing.assert_close(out[0]["masks"], paste_masks_in_image(masks, boxes, (60, 64), 1))
    assert out[1]["masks"].shape == (0, 1, 10, 12)


@pytest.mark.parametrize("padding", [0, 1, 2])
def test_batched_mask_paste_equals_torchvisions_per_mask_loop(padding: int) -> None:
    """Random masks, sizes and boxes (some past the right and bottom edges, some under a pixel;
    none left of or above the image, as clipped detections: torchvision's loop fails there)."""
    g = torch.Generator().manual_seed(padding)
    for _ in range(30):
        k = int(torch.randint(1, 9, (1,), generator=g))
        m = int(torch.randint(4, 29, (1,), generator=g))
        h, w = (int(v) for v in torch.randint(8, 100, (2,), generator=g))
        masks = torch.rand(k, 1, m, m, generator=g)
        xy = torch.rand(k, 2, generator=g) * torch.tensor([w - 1.0, h - 1.0])
        boxes = torch.cat([xy, xy + torch.rand(k, 2, generator=g) * 70 + 0.01], 1)
        expected = paste_masks_in_image(masks, boxes, (h, w), padding)
        got = paste_masks_batched(masks, boxes, (h, w), padding)
        assert got.shape == expected.shape == (k, 1, h, w)
        # float32 rounding of the same source coordinates (torchvision's own error against a
        # float64 paste is ~3e-6)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_batched_mask_paste_reads_nothing_back_and_auto_keeps_the_cpu_loop() -> None:
    masks, boxes = torch.rand(4, 1, 14, 14), torch.tensor([[2.0, 3, 20, 30]]).repeat(4, 1)
    batched = build_component("postprocessor", {"type": "mask_paste", "method": "batched"})
    with record_host_syncs() as syncs:
        batched([{"masks": masks, "boxes": boxes}], [(40, 36)])
    assert syncs == []
    auto = build_component("postprocessor", {"type": "mask_paste"})
    with record_host_syncs() as syncs:  # torchvision's loop on the CPU: reads every box
        auto([{"masks": masks, "boxes": boxes}], [(40, 36)])
    assert len(syncs) >= 4


def test_box_coder_is_torchvisions() -> None:
    # rcnn_detections decodes with the injected delta_xywh: same numbers as torchvision's coder.
    coder = build_component("box_coder", {"type": "delta_xywh"})
    ref = torch.tensor([[10.0, 10, 50, 40]])
    d = torch.tensor([[0.5, -0.2, 0.3, 0.1]])
    torch.testing.assert_close(
        coder.decode(d, ref), BoxCoder((10.0, 10.0, 5.0, 5.0)).decode_single(d, ref)
    )
