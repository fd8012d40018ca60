"""What is measured per entry, besides latency: inputs, size, FLOPs, train step, memory, AP.

Inputs are generated from a fixed seed, so every entry sees the same images and targets:
images float32 [3,S,S] in 0..1; targets with ``boxes`` float32 [3,4] xyxy pixels, ``labels``
int64 [3] in 1..3, ``masks`` uint8 [3,S,S] (box-shaped), ``semantic_mask`` int64 [S,S] (box
regions labelled, 0 elsewhere), ``image_id``, ``iscrowd``, ``area``, ``orig_size``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .timing import synchronize

NUM_BOXES = 3
NUM_LABELS = 3
TRAIN_LR = 0.0
"""The train step is a full SGD(momentum 0.9, weight decay 1e-4) step with lr 0: every update
is computed and applied, but the weights stay put, so the twins keep identical weights (and
identical detections) round after round and no run can diverge."""


def make_batch(
    batch_size: int, image_size: int, seed: int, device: torch.device
) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """``batch_size`` images [3,S,S] and their targets (see module docstring), seeded."""
    g = torch.Generator().manual_seed(seed)
    s = image_size
    images, targets = [], []
    for i in range(batch_size):
        images.append(torch.rand(3, s, s, generator=g).to(device))
        xy = torch.rand(NUM_BOXES, 2, generator=g) * (s * 0.6)
        wh = (0.15 + torch.rand(NUM_BOXES, 2, generator=g) * 0.25) * s
        boxes = torch.cat([xy, (xy + wh).clamp(max=s - 1)], 1).floor()
        labels = torch.randint(1, NUM_LABELS + 1, (NUM_BOXES,), generator=g)
        masks = torch.zeros(NUM_BOXES, s, s, dtype=torch.uint8)
        semantic = torch.zeros(s, s, dtype=torch.int64)
        for k, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
            masks[k, y1:y2, x1:x2] = 1
            semantic[y1:y2, x1:x2] = labels[k]
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        target = {
            "boxes": boxes,
            "labels": labels,
            "masks": masks,
            "semantic_mask": semantic,
            "image_id": i,
            "iscrowd": torch.zeros(NUM_BOXES, dtype=torch.int64),
            "area": area,
            "orig_size": (s, s),
        }
        targets.append({k: v.to(device) if torch.is_tensor(v) else v for k, v in target.items()})
    return images, targets


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """Mixed precision: bfloat16 on CPU, float16 on CUDA (a no-op when not ``enabled``)."""
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=enabled)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(all parameters, trainable parameters)."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def count_gflops(model: nn.Module, images: Sequence[torch.Tensor]) -> float:
    """GFLOPs of one eval forward over ``images`` (torch.utils.flop_counter: matmuls and
    convolutions; NMS, RoI align and elementwise ops are not counted).

    The parameters stop requiring grad while counting: under ``no_grad`` a view of a
    parameter (a query embedding expanded over the batch) still requires grad but has no
    grad_fn, and the counter's module tracker fails on such a submodule argument."""
    model.eval()
    counter = FlopCounterMode(display=False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    try:
        for p in trainable:
            p.requires_grad_(False)
        with torch.no_grad(), counter:
            model(list(images))
    finally:
        for p in trainable:
            p.requires_grad_(True)
    return counter.get_total_flops() / 1e9


def make_infer(
    model: nn.Module, images: list[torch.Tensor], *, seed: int, amp: bool, device: torch.device
) -> Callable[[], Any]:
    """One eval forward under ``inference_mode`` (and autocast with ``amp``)."""

    def infer() -> Any:
        torch.manual_seed(seed)
        with torch.inference_mode(), autocast(device, amp):
            return model(images)

    return infer


def make_train_step(
    model: nn.Module,
    images: list[torch.Tensor],
    targets: list[dict[str, Any]],
    *,
    seed: int,
    amp: bool,
    device: torch.device,
) -> tuple[Callable[[], float], torch.optim.Optimizer]:
    """One training step: zero grads, forward with targets, sum of ``loss_*``, backward,
    optimizer step (see ``TRAIN_LR``); float16 AMP on CUDA uses a GradScaler."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=TRAIN_LR, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(device.type) if amp and device.type == "cuda" else None

    def step() -> float:
        torch.manual_seed(seed)
        opt.zero_grad(set_to_none=True)
        with autocast(device, amp):
            losses = model(images, targets)
        loss = sum(losses.values())
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        return float(loss.detach())

    return step, opt


def peak_step_memory(
    step: Callable[[], Any], opt: torch.optim.Optimizer, device: torch.device
) -> tuple[float | None, str]:
    """Peak MiB allocated during one train step above what was allocated before it.

    CUDA: ``max_memory_allocated`` after ``reset_peak_memory_stats`` minus
    ``memory_allocated`` before. CPU: torch.profiler's memory events (alloc +, free −) of
    the step, cumulated in time order; the maximum is the peak of tensors the step allocates
    (RSS-based measures would count the allocator's and Python's caching instead). Gradients
    are released before the step in both cases. Returns (MiB or None, method).
    """
    opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        return peak / 2**20, "cuda max_memory_allocated above pre-step allocation"
    from torch.profiler import ProfilerActivity, profile

    with _quiet(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    results = getattr(prof.profiler, "kineto_results", None)
    if results is None:
        return None, "unavailable (torch.profiler gave no memory events)"
    mem = sorted((e.start_ns(), e.nbytes()) for e in results.events() if e.name() == "[memory]")
    running = peak = 0
    for _, nbytes in mem:
        running += nbytes
        peak = max(peak, running)
    return peak / 2**20, "torch.profiler CPU memory events (peak of step allocations)"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the profiler on machines without a GPU: its Python warnings, and kineto's own
    log lines on stderr (``USDT: ... profiler_start``, ``ERROR: ... gpuGetDeviceCount failed``),
    which kineto prints unless ``KINETO_LOG_LEVEL`` is above its last level (6). kineto reads
    the variable when the profiler first starts; a value the user set is kept."""
    import os
    import warnings

    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def compare_outputs(a: Any, b: Any) -> dict[str, Any]:
    """How close two models' eval outputs (one dict per image) on the same batch are.

    Every field both outputs have is compared image by image: shapes must agree (so the
    detection counts do), ``labels`` must be equal, and ``max_abs_diff`` is the largest
    absolute difference of the other fields (boxes in pixels, scores, masks, ``sem_seg``
    logits). ``same`` when shapes and labels agree and the difference is at most 1e-2;
    ``detections`` / ``twin_detections`` are the per-image counts when there are boxes.
    """
    shapes_agree = len(a) == len(b)
    diff = 0.0
    for x, y in zip(a, b):
        for key in x.keys() & y.keys():
            u, v = x[key], y[key]
            if u.shape != v.shape:
                shapes_agree = False
            elif key == "labels":
                diff = diff if torch.equal(u, v) else float("inf")
            elif u.numel():
                diff = max(diff, (u.float() - v.float()).abs().max().item())
    result: dict[str, Any] = {"same": shapes_agree and diff <= 1e-2, "max_abs_diff": diff}
    if a and "boxes" in a[0]:
        result["detections"] = [len(o["boxes"]) for o in a]
        result["twin_detections"] = [len(o["boxes"]) for o in b]
    return result


def evaluate_checkpoint(
    model: nn.Module, dataset_spec: Any, device: torch.device, progress: bool
) -> dict[str, float]:
    """Metrics of ``model`` (weights loaded) on the eval split of ``dataset_spec``.

    Uses the data subsystem (``build_dataloader``) and the spec's ``eval.metrics``.
    """
    from anchorage.core.data import build_dataloader
    from anchorage.core.evaluation import build_metrics, evaluate

    section = dataset_spec.get("eval")
    split = getattr(section, "split", "val") if section is not None else "val"
    loader = build_dataloader(dataset_spec, split)
    class_names = list(getattr(loader.dataset, "class_names", []))
    metrics = build_metrics(dataset_spec, class_names)
    model.eval()
    return evaluate(model, loader, metrics, device, progress=progress)


def primary_metric(metrics: dict[str, float]) -> tuple[str, float] | None:
    """The headline number: bbox/AP, else segm/AP, else seg/mIoU, else the first key."""
    for key in ("bbox/AP", "segm/AP", "seg/mIoU"):
        if key in metrics:
            return key, metrics[key]
    return next(iter(metrics.items()), None)
