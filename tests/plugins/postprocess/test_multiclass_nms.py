import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import BoxCoder, _topk_min
from torchvision.ops import batched_nms, clip_boxes_to_image

from anchorage.core import build_component
from anchorage.core.interfaces import Anchors

CODER = build_component("box_coder", {"type": "delta_xywh"})


def _reference(logits, deltas, anchors, sizes, thr, nms, topk, dets):
    """torchvision SSD.postprocess_detections, copied loop for loop."""
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    out = []
    for lg, dl, size in zip(logits, deltas, sizes):
        boxes = clip_boxes_to_image(coder.decode_single(dl, anchors), size)
        scores = F.softmax(lg, -1)
        ib, isc, il = [], [], []
        for label in range(1, scores.shape[-1]):
            s = scores[:, label]
            k = s > thr
            s, b = s[k], boxes[k]
            s, i = s.topk(_topk_min(s, topk, 0))
            ib.append(b[i])
            isc.append(s)
            il.append(torch.full_like(s, label, dtype=torch.int64))
        ib, isc, il = torch.cat(ib), torch.cat(isc), torch.cat(il)
        keep = batched_nms(ib, isc, il, nms)[:dets]
        out.append({"boxes": ib[keep], "scores": isc[keep], "labels": il[keep]})
    return out


def _problem(seed: int, a: int = 300, c: int = 4):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(a, 2, generator=g) * 60
    anchors = torch.cat([xy, xy + 4 + torch.rand(a, 2, generator=g) * 30], -1)
    logits = torch.randn(2, a, c + 1, generator=g) * 2
    deltas = torch.randn(2, a, 4, generator=g)
    return logits, deltas, anchors


def test_same_as_torchvision_ssd_postprocess():
    pp = build_component(
        "postprocessor",
        box_coder=CODER,
        data={
            "type": "multiclass_nms",
            "score_thresh": 0.2,
            "topk_candidates": 50,
            "detections_per_img": 40,
        },
    )
    sizes = [(70, 80), (50, 64)]
    for seed in range(3):
        logits, deltas, anchors = _problem(seed)
        ours = pp(
            {"cls_logits": logits, "bbox_deltas": deltas}, Anchors.single_level(anchors), sizes
        )
        ref = _reference(logits, deltas, anchors, sizes, 0.2, 0.45, 50, 40)
        for o, r, (h, w) in zip(ours, ref, sizes):
            assert len(r["scores"]) > 0
            for key in ("boxes", "scores", "labels"):
                assert torch.equal(o[key], r[key]), key
            assert o["labels"].dtype == torch.int64
            assert (o["boxes"][:, 2] <= w).all() and (o["boxes"][:, 3] <= h).all()


def test_no_candidates_gives_empty_results():
    pp = build_component(
        "postprocessor", {"type": "multiclass_nms", "score_thresh": 0.99}, box_coder=CODER
    )
    logits, deltas, anchors = _problem(0)
    out = pp(
        {"cls_logits": torch.zeros_like(logits), "bbox_deltas": deltas},
        Anchors.single_level(anchors),
        [(9, 9)] * 2,
    )
    assert [o["boxes"].shape for o in out] == [(0, 4), (0, 4)]
    assert out[0]["labels"].dtype == torch.int64


def test_sigmoid_scores_and_detection_cap():
    pp = build_component(
        "postprocessor",
        box_coder=CODER,
        data={
            "type": "multiclass_nms",
            "score": "sigmoid",
            "score_thresh": 0.0,
            "detections_per_img": 5,
        },
    )
    logits, deltas, anchors = _problem(1, c=3)
    out = pp(
        {"cls_logits": logits[..., :3], "bbox_deltas": deltas},
        Anchors.single_level(anchors),
        [(100, 100)] * 2,
    )
    assert all(len(o["scores"]) == 5 for o in out)
    assert all((o["labels"] >= 1).all() and (o["labels"] <= 3).all() for o in out)
    assert torch.all(out[0]["scores"][:-1] >= out[0]["scores"][1:])
