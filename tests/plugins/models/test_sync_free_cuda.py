"""No host-device synchronisation on the hot path (CUDA only; skipped without CUDA).

``torch.cuda.set_sync_debug_mode("error")`` raises at the first synchronising CUDA call
(``.item()``, ``.tolist()``, ``nonzero``, boolean-mask indexing, a blocking copy to the host).

- tiny SSD: a whole train step (forward with targets, loss, backward, optimizer step) and the
  eval forward up to the postprocessor run under ``"error"``: nothing in them may sync.
- tiny Faster R-CNN: NMS is a synchronisation by nature (torchvision's CUDA kernel copies its
  mask to the host), and so is cutting its survivors into per-image lists, so the train step
  and eval forward run under ``"warn"`` and every synchronising call must come from a
  function on the list below (NMS and the postprocessors' compaction/splitting); anything else
  (a ``.item()`` in a head, a loss, a matcher, the model glue) fails the test with its site.

``test_host_syncs.py`` runs the same checks on any machine (``anchorage.core.host_sync``).
"""

from __future__ import annotations

import ast
import functools
import warnings
from pathlib import Path

import pytest
import torch
from support.sync_sites import ALLOWED, tiny_batch, train_step

from anchorage.core import build_component, build_model, load_spec
from anchorage.plugins.models.two_stage import _TINY

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA: set_sync_debug_mode checks CUDA syncs"
)


@functools.cache
def _functions(path: str) -> list[tuple[int, int, str]]:
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    return [
        (n.lineno, n.end_lineno or n.lineno, n.name)
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]


def _site(filename: str, lineno: int) -> tuple[str, str]:
    """(file name, innermost enclosing function) of a warning's source line."""
    try:
        spans = [s for s in _functions(filename) if s[0] <= lineno <= s[1]]
    except (OSError, SyntaxError):
        spans = []
    inner = max(spans, key=lambda s: s[0])[2] if spans else "<module>"
    return Path(filename).name, inner


@pytest.fixture
def sync_mode():
    """Set the debug mode for the test body; restore the default afterwards."""
    yield torch.cuda.set_sync_debug_mode
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode(0)


def test_tiny_ssd_train_step_and_forward_do_not_sync(sync_mode) -> None:
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = build_model(load_spec("specs/tiny_ssd_shapes.yaml")).to(device)
    images, targets = tiny_batch(device)
    train_step(model, images, targets)  # warm-up: lazy initialisation may sync once
    captured = {}

    def keep_inputs(predictions, references, image_sizes):
        """Stands in for the postprocessor (NMS syncs): records its inputs, detects nothing."""
        captured["predictions"] = predictions
        return [
            {
                "boxes": torch.zeros(0, 4, device=device),
                "scores": torch.zeros(0, device=device),
                "labels": torch.zeros(0, dtype=torch.int64, device=device),
            }
            for _ in image_sizes
        ]

    real = model.postprocessor
    model.postprocessor = keep_inputs
    try:
        sync_mode("error")
        train_step(model, images, targets)
        model.eval()
        with torch.no_grad():
            out = model(images)
    finally:
        sync_mode(0)
        model.postprocessor = real
    assert captured["predictions"] and len(out) == len(images)


def test_tiny_faster_rcnn_syncs_only_at_nms_and_final_outputs(sync_mode) -> None:
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = build_component("model", {"type": "two_stage", **_TINY}).to(device)
    images, targets = tiny_batch(device)
    train_step(model, images, targets)  # warm-up
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sync_mode("warn")
        train_step(model, images, targets)
        model.eval()
        with torch.no_grad():
            model(images)
        sync_mode(0)
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    sites = sorted({_site(w.filename, w.lineno) for w in syncs})
    print("sync sites:", sites)
    assert syncs, "sync debug mode reported nothing: NMS alone must show up"
    assert set(sites) <= ALLOWED, (
        f"unexpected synchronising calls at {sorted(set(sites) - ALLOWED)}"
    )
