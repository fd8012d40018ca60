"""Equal scores come out in one order in eager mode, in ONNX Runtime and in the loaded
ExportedProgram: ``padded.stable_topk`` (candidates) and ``padded.padded_nms`` (NMS and the
final selection) rank them by position, and the eager path's ``select_nms`` keeps that order.

``torch.topk`` and ONNX Runtime's ``TopK`` / ``NonMaxSuppression`` each order ties their own
way, so without the key a model that scores many boxes exactly alike (a uniform image region,
a head whose weights do not see the features) gives the same detections in another order.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from anchorage.plugins.postprocess.batching import select_nms
from anchorage.plugins.postprocess.padded import padded_nms, stable_topk

ROOT = Path(__file__).resolve().parents[3]


def test_stable_topk_orders_equal_scores_by_position() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 7, (3, 2, 5000), generator=gen).float() / 7
    scores[0, 0, ::3] = float("-inf")
    scores[1, 1, :100] = 0.0  # zeros are ordered too
    top, pos = stable_topk(scores, 1200)
    want, order = scores.sort(dim=-1, descending=True, stable=True)
    assert torch.equal(pos, order[..., :1200])
    assert torch.equal(top, want[..., :1200])


def test_stable_topk_keeps_distinct_scores_apart() -> None:
    """Neighbouring float32 scores (one ulp apart) at the far ends of a long row."""
    m = 1 << 20
    scores = torch.full((1, m), 0.5)
    scores[0, -1] = torch.nextafter(torch.tensor(0.5), torch.tensor(1.0))
    top, pos = stable_topk(scores, 3)
    assert pos.tolist() == [[m - 1, 0, 1]]


class _PaddedNMS(nn.Module):
    def forward(
        self, boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        out = padded_nms(boxes, scores, labels, 3, 0.5, 40)
        return out["boxes"], out["scores"], out["labels"], out["num_detections"]


def _tied_candidates() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two images of 40 candidates of equal score: rows of boxes 2 px apart (IoU 0.67 with a
    neighbour, 0.43 with the next: which survive depends on where NMS starts), two labels,
    one better box, padded slots."""
    x = torch.arange(20.0) * 2
    row = torch.stack([x, torch.zeros(20), x + 10, torch.full((20,), 10.0)], 1)
    boxes = torch.cat([row, row + 3]).expand(2, -1, -1).clone()  # [2,40,4]
    boxes[1] = boxes[1].flip(0)
    scores = torch.full((2, 40), 0.5)
    scores[:, 7] = 0.7
    scores[1, 30:] = float("-inf")
    labels = torch.tensor([[1] * 20 + [2] * 20, [2] * 20 + [1] * 20])
    return boxes, scores, labels


def _eager(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> list[dict]:
    valid = torch.isfinite(scores)
    img = torch.arange(2)[:, None].expand(2, 40)[valid]
    return select_nms(img, boxes[valid], scores[valid], labels[valid], (2, 2), 0.5, 40)


def test_padded_nms_ties_equal_eager_in_onnxruntime(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnxruntime as ort

    args = _tied_candidates()
    program = torch.export.export(_PaddedNMS(), args, strict=False)
    path = tmp_path / "nms.onnx"
    torch.onnx.export(program, dynamo=True).save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = dict(zip([i.name for i in session.get_inputs()], [a.numpy() for a in args]))
    backends = {
        "onnxruntime": [torch.from_numpy(o) for o in session.run(None, feeds)],
        "exported_program": list(program.module()(*args)),
        "eager padded": list(_PaddedNMS()(*args)),
    }
    want = _eager(*args)
    for name, (boxes, scores, labels, count) in backends.items():
        assert count.tolist() == [len(w["boxes"]) for w in want], name
        for i, w in enumerate(want):
            n = len(w["boxes"])
            assert torch.equal(boxes[i, :n], w["boxes"]), name
            assert torch.equal(scores[i, :n], w["scores"]), name
            assert torch.equal(labels[i, :n], w["labels"]), name


def _tied_model(name: str) -> nn.Module:
    """A shipped spec whose head's convolutions have zero weights: every place scores and
    regresses as its bias says, so each anchor shape's boxes tie all over the image."""
    from anchorage.core import build_model, load_spec

    torch.manual_seed(0)
    spec = load_spec(str(ROOT / "specs" / name), ["model.postprocessor.score_thresh=0.0"])
    model = build_model(spec).eval()
    with torch.no_grad():
        for conv in model.head.modules():
            if isinstance(conv, nn.Conv2d):
                conv.weight.zero_()
    return model


@pytest.mark.parametrize(
    "spec",
    ["tiny_ssd_shapes.yaml", pytest.param("yolo_shapes.yaml", marks=pytest.mark.slow)],
)
def test_exported_detections_tie_like_eager(spec: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from anchorage.core.deploy import export_model, load_exported

    model = _tied_model(spec)
    image = torch.rand((3, 112, 128), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model([image])[0]
    scores = want["scores"]
    assert len(scores) > 10 and len(scores.unique()) < len(scores) / 4  # mostly ties
    for fmt, backend in (("onnx", "onnxruntime"), ("exported_program", "exported_program")):
        path = tmp_path / f"m.{fmt}"
        export_model(model, format=fmt, example=[image], out=path)
        got = load_exported(path, backend)([image])[0]
        assert got["labels"].tolist() == want["labels"].tolist(), backend
        torch.testing.assert_close(got["scores"], want["scores"], atol=1e-6, rtol=0)
        torch.testing.assert_close(got["boxes"], want["boxes"], atol=1e-4, rtol=0)
