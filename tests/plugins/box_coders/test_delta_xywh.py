import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder as TVBoxCoder

from anchorage.core import SpecError, build_component


def _boxes(n: int, g: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * 200
    return torch.cat([xy, xy + 2 + torch.rand(n, 2, generator=g) * 100], -1)


@pytest.mark.parametrize("weights", [(10.0, 10.0, 5.0, 5.0), (1.0, 1.0, 1.0, 1.0)])
def test_bitwise_same_as_torchvision(weights):
    g = torch.Generator().manual_seed(0)
    gt, anchors = _boxes(500, g), _boxes(500, g)
    ours = build_component("box_coder", {"type": "delta_xywh", "weights": weights})
    ref = TVBoxCoder(weights)
    deltas = ours.encode(gt, anchors)
    assert torch.equal(deltas, ref.encode_single(gt, anchors))
    rel = torch.randn(500, 4, generator=g) * 3  # large enough to hit the exp clamp
    assert torch.equal(ours.decode(rel, anchors), ref.decode_single(rel, anchors))


def test_broadcast_batch_against_shared_anchors():
    g = torch.Generator().manual_seed(1)
    anchors = _boxes(30, g)
    gt = torch.stack([_boxes(30, g), _boxes(30, g)])
    coder = build_component("box_coder", {"type": "delta_xywh"})
    deltas = coder.encode(gt, anchors)
    assert deltas.shape == (2, 30, 4)
    assert torch.equal(deltas[1], coder.encode(gt[1], anchors))
    torch.testing.assert_close(coder.decode(deltas, anchors), gt, rtol=1e-5, atol=1e-3)


def test_decode_clamps_size_deltas():
    coder = build_component("box_coder", {"type": "delta_xywh", "weights": (1.0, 1.0, 1.0, 1.0)})
    anchor = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    box = coder.decode(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), anchor)
    side = 10 * math.exp(math.log(1000.0 / 16))
    torch.testing.assert_close(box[0, 2] - box[0, 0], torch.tensor(side))
    assert torch.isfinite(box).all()


def test_rejects_non_positive_weights():
    with pytest.raises(SpecError, match="weights"):
        build_component("box_coder", {"type": "delta_xywh", "weights": [1, 0, 1, 1]})
