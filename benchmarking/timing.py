"""Wall-clock timing: synchronised calls, interleaved round-robin rounds, percentiles.

Every measured call is bracketed by ``torch.cuda.synchronize()`` on CUDA so that queued
kernels are counted. Tasks (one per entry × mode × batch size) run interleaved: in each round
every task runs once, the starting task rotating from round to round, so that slow drifts of
the machine (other processes, thermal state) fall on all entries alike. Warm-up rounds run the
same way and are discarded. A task that fails (out of memory, or an error such as a train-mode
BatchNorm on a 1×1 map at batch 1) is marked failed with its message and skipped from then on;
the others go on.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np
import torch
from tqdm import tqdm


@attrs.define(kw_only=True)
class TimedTask:
    """One measured callable. ``times``: seconds per call (after warm-up); ``error``: why it
    stopped (an out-of-memory message), else None."""

    key: tuple[str, str, int]
    fn: Callable[[], Any]
    times: list[float] = attrs.field(factory=list)
    error: str | None = None


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA OOM, host ``MemoryError`` and allocator 'out of memory' runtime errors."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def release_memory(device: torch.device) -> None:
    """Free cached blocks after an OOM so that later entries start clean."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


Clock = Callable[[], float]
CLOCKS: dict[str, Clock] = {"wall": time.perf_counter, "cpu": time.process_time}
"""``wall``: elapsed time (what a user waits; the default). ``cpu``: CPU seconds of the whole
process, all threads: on a shared CPU machine it leaves out the time other processes hold the
cores, so twins compare fairly under load; with one intra-op thread it is the work of the call.
Not a latency on CUDA (kernels run on the GPU), so CUDA runs use ``wall``."""


def timed_call(
    fn: Callable[[], Any], device: torch.device, clock: Clock = time.perf_counter
) -> float:
    """Seconds one call of ``fn`` takes on ``clock``, synchronised before and after on CUDA."""
    synchronize(device)
    start = clock()
    fn()
    synchronize(device)
    return clock() - start


def failure_message(exc: BaseException, where: str) -> str:
    """Short report of a failed call: ``OOM (infer, batch 8): ...`` or ``ValueError (...)``."""
    text = str(exc).strip()
    first = text.splitlines()[0][:160] if text else ""
    kind = "OOM" if is_out_of_memory(exc) else type(exc).__name__
    return f"{kind} ({where}): {first}" if first else f"{kind} ({where})"


def run_interleaved(
    tasks: Sequence[TimedTask],
    *,
    rounds: int,
    warmup: int,
    device: torch.device,
    progress: bool = True,
    clock: Clock = time.perf_counter,
) -> None:
    """Run ``warmup`` + ``rounds`` rounds over ``tasks``, recording times after warm-up.

    Round r starts at task ``r % len(tasks)`` (rotation). An exception (out of memory, or a
    model that cannot run this batch) ends that task with ``task.error`` set; the others go on.
    """
    n = len(tasks)
    with tqdm(
        total=(warmup + rounds) * n,
        desc="benchmark",
        unit="call",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    ) as bar:
        for r in range(warmup + rounds):
            for i in range(n):
                task = tasks[(i + r) % n]
                bar.set_postfix_str(f"{task.key[0]} {task.key[1]} b{task.key[2]}", refresh=False)
                if task.error is None:
                    _run_one(task, device, clock, record=r >= warmup)
                bar.update(1)


def _run_one(task: TimedTask, device: torch.device, clock: Clock, *, record: bool) -> None:
    try:
        dt = timed_call(task.fn, device, clock)
    except Exception as exc:  # reported in the entry's row; the other entries go on
        task.error = failure_message(exc, f"{task.key[1]}, batch {task.key[2]}")
        release_memory(device)
        return
    if record:
        task.times.append(dt)


def summarize(times: Sequence[float], batch_size: int) -> dict[str, Any]:
    """Milliseconds: p50, p90, mean, min; ``images_per_s`` = batch / p50; ``n`` samples;
    ``rounds_ms``: every sample in round order (for ``paired_ratio``)."""
    if not times:
        return {}
    ms = np.asarray(times, dtype=np.float64) * 1000.0
    p50 = float(np.percentile(ms, 50))
    return {
        "p50_ms": p50,
        "p90_ms": float(np.percentile(ms, 90)),
        "mean_ms": float(ms.mean()),
        "min_ms": float(ms.min()),
        "images_per_s": batch_size * 1000.0 / p50 if p50 > 0 else float("inf"),
        "n": int(ms.size),
        "rounds_ms": [round(float(t), 4) for t in ms],
    }


def paired_ratio(
    a_ms: Sequence[float],
    b_ms: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = 4000,
    seed: int = 0,
) -> dict[str, float] | None:
    """Median of the per-round ratios ``a[r] / b[r]`` and its bootstrap confidence interval.

    ``a_ms`` and ``b_ms`` are two tasks' times in round order (``summarize``'s ``rounds_ms``):
    rounds are interleaved, so round r of both ran within one pass over the tasks and a slow
    drift of the machine divides out of ``a[r] / b[r]``, which a ratio of the two p50s keeps.
    The interval is the percentile bootstrap over rounds (``resamples`` draws of the rounds
    with replacement, a fixed ``seed``: the same record gives the same interval). Written with
    numpy because scipy (``scipy.stats.bootstrap``) is only in an optional extra. Returns
    ``{"median", "low", "high", "n"}``, or None with fewer than 2 paired rounds.
    """
    n = min(len(a_ms), len(b_ms))
    if n < 2:
        return None
    ratios = np.asarray(a_ms[:n], dtype=np.float64) / np.asarray(b_ms[:n], dtype=np.float64)
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    medians = np.median(ratios[draws], axis=1)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(medians, [tail, 100.0 - tail])
    return {"median": float(np.median(ratios)), "low": float(low), "high": float(high), "n": n}
