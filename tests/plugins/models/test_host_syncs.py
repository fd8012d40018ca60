"""No host-device synchronisation on the hot path, checked on any machine.

``anchorage.core.host_sync.record_host_syncs`` records every operator that would make the
host wait for a GPU (``.item()``, ``.tolist()``, ``nonzero``, boolean-mask indexing, NMS, ...)
with its site. The same allow-list as the CUDA test (``tests/support/sync_sites.py``) bounds
where they may happen: a sync in a head, a loss, a matcher or the model glue fails here, on
the CPU, before it costs anything on a GPU.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from support.sync_sites import ALLOWED, HOST_ONLY, tiny_batch, train_step

from anchorage.core import build_component, build_model, load_spec
from anchorage.core.errors import DataError
from anchorage.core.host_sync import from_host, record_host_syncs
from anchorage.plugins.models.detection_batch import check_targets
from anchorage.plugins.models.two_stage import _TINY


def _sites(syncs: list) -> Counter:
    return Counter((s.file, s.function) for s in syncs)


def test_recorder_sees_the_synchronising_calls_and_only_those() -> None:
    x = torch.arange(6.0)
    mask = x > 2
    syncing = {
        "item": lambda: x.sum().item(),
        "tolist": lambda: x.tolist(),
        "bool": lambda: bool(mask.any()),
        "nonzero": lambda: mask.nonzero(),
        "mask index": lambda: x[mask],
        "repeat_interleave": lambda: torch.repeat_interleave(x, torch.full((6,), 2)),
        "bincount": lambda: torch.bincount(torch.tensor([0, 2])),
        "cpu": lambda: x.cpu(),
    }
    free = {
        "integer index": lambda: x[torch.tensor([1, 3])],
        "masked_fill": lambda: x.masked_fill(mask, 0),
        "where": lambda: torch.where(mask, x, 0),
        "repeat_interleave with size": lambda: torch.repeat_interleave(
            x, torch.full((6,), 2), output_size=12
        ),
        "nonzero_static": lambda: torch.nonzero_static(mask, size=3),
        "non-blocking copy": lambda: x.to("cpu", non_blocking=True),
    }
    for name, fn in {**syncing, **free}.items():
        with record_host_syncs() as syncs:
            fn()
        assert bool(syncs) == (name in syncing), name
        if syncs:
            assert syncs[0].function == "<lambda>" and syncs[0].file == "test_host_syncs.py"


@pytest.mark.parametrize(
    "spec", ["tiny_ssd_shapes", "retinanet_r18_fpn_shapes", "fcos_r18_fpn_shapes", "yolo_shapes"]
)
def test_dense_train_step_and_forward_read_nothing_back(spec: str) -> None:
    """Matchers, focal / GIoU / centerness / objectness losses, heads: no host reads."""
    torch.manual_seed(0)
    model = build_model(load_spec(f"specs/{spec}.yaml"))
    images, targets = tiny_batch()
    train_step(model, images, targets)
    model.postprocessor = lambda predictions, references, sizes: [
        {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0).long()}
        for _ in sizes
    ]
    with record_host_syncs() as syncs:
        train_step(model, images, targets)
        model.eval()
        with torch.no_grad():
            model(images)
    assert set(_sites(syncs)) <= HOST_ONLY, _sites(syncs)


def test_tiny_faster_rcnn_syncs_only_at_nms_and_final_outputs() -> None:
    torch.manual_seed(0)
    model = build_component("model", {"type": "two_stage", **_TINY})
    images, targets = tiny_batch()
    train_step(model, images, targets)
    with record_host_syncs() as train:
        train_step(model, images, targets)
    model.eval()
    with torch.no_grad(), record_host_syncs() as infer:
        model(images)
    for syncs in (train, infer):
        sites = _sites(syncs)
        assert set(sites) <= ALLOWED | HOST_ONLY, set(sites) - ALLOWED - HOST_ONLY
    # the RoI stage of a train step reads its per-image counts once, and nothing else
    assert _sites(train)[("rcnn_stages.py", "sample")] == 1
    assert sum(_sites(train).values()) <= 8, _sites(train)


@pytest.mark.parametrize("spec", ["detr_r18_shapes", "deformable_detr_r18_shapes"])
def test_set_prediction_syncs_once_per_train_step_and_never_in_inference(spec: str) -> None:
    """The Hungarian matching of every decoder layer (stacked along the batch) copies its
    cost to the host once per train step; inference (top-k, no NMS) reads nothing back."""
    pytest.importorskip("scipy")
    torch.manual_seed(0)
    small = ["model.transformer.hidden_dim=32", "model.transformer.ffn_dim=64"]
    model = build_model(load_spec(f"specs/{spec}.yaml", overrides=small))
    images, targets = tiny_batch()
    train_step(model, images, targets)
    with record_host_syncs() as train:
        train_step(model, images, targets)
    model.eval()
    with torch.no_grad(), record_host_syncs() as infer:
        model(images)
    assert set(_sites(train)) - HOST_ONLY == {("hungarian.py", "_solve")}, _sites(train)
    copies = [s for s in train if s.function == "_solve" and s.op == "Tensor.cpu"]
    assert len(copies) == 1, train  # (its .numpy() on the host copy is recorded beside it)
    assert set(_sites(infer)) <= HOST_ONLY, _sites(infer)


def test_target_values_are_checked_on_the_host_only() -> None:
    images, targets = tiny_batch()
    targets[1]["labels"] = torch.tensor([2, 7])  # out of range for 3 classes
    with pytest.raises(DataError, match=r"targets\[1\]\['labels'\]: labels must be in 1..3"):
        check_targets(images, targets, 3)
    on_device = [{k: v.to("meta") for k, v in t.items()} for t in targets]
    with record_host_syncs() as syncs:
        check_targets(images, on_device, 3)  # off the CPU: shapes only, no value read
    assert not syncs


def test_from_host_builds_like_torch_tensor_and_copies_without_blocking() -> None:
    got = from_host([[1, 2], [3, 4]], dtype=torch.float32)
    assert torch.equal(got, torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    elsewhere = from_host((8, 16), device="meta")  # any non-CPU device: a non-blocking copy
    assert elsewhere.device.type == "meta" and elsewhere.dtype == torch.int64
