import torch

from anchorage.core import build_component


def test_d2l_example():
    # The worked example of d2l 14.4.3 (IoU matrix transposed to gt × anchor).
    iou = torch.tensor(
        [
            [
                [0.9, 0.1, 0.6, 0.0, 0.2],
                [0.8, 0.7, 0.1, 0.3, 0.0],
                [0.0, 0.2, 0.4, 0.8, 0.55],
            ]
        ]
    )
    out = build_component("matcher", {"type": "greedy_bipartite", "threshold": 0.5}).match_iou(iou)
    # Greedy: (g0,a0)=0.9, then (g2,a3)=0.8, then (g1,a1)=0.7; then a2 -> g0 (0.6),
    # a4 -> g2 (0.55) by threshold.
    assert out.tolist() == [[0, 1, 0, 2, 2]]


def test_every_gt_gets_an_anchor_even_below_threshold():
    iou = torch.tensor([[[0.2, 0.1, 0.0], [0.15, 0.3, 0.0], [-1.0, -1.0, -1.0]]])
    out = build_component("matcher", {"type": "greedy_bipartite"}).match_iou(iou)
    assert out.tolist() == [[0, 1, -1]]


def test_gt_overlapping_nothing_is_not_assigned():
    iou = torch.tensor([[[0.0, 0.0], [0.0, 0.6]]])
    out = build_component("matcher", {"type": "greedy_bipartite"}).match_iou(iou)
    assert out.tolist() == [[-1, 1]]
