"""Interleaved rounds, failure handling and percentiles of the benchmark timer."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from anchorage.benchmarking.timing import (
    CLOCKS,
    TimedTask,
    is_out_of_memory,
    paired_ratio,
    run_interleaved,
    summarize,
)

CPU = torch.device("cpu")


def _tasks(calls: list[str], names: str) -> list[TimedTask]:
    return [TimedTask(key=(n, "infer", 1), fn=lambda n=n: calls.append(n)) for n in names]


def test_rounds_rotate_the_starting_task_and_drop_warmup() -> None:
    calls: list[str] = []
    tasks = _tasks(calls, "abc")
    run_interleaved(tasks, rounds=3, warmup=1, device=CPU, progress=False)
    assert calls == list("abc" + "bca" + "cab" + "abc")
    assert [len(t.times) for t in tasks] == [3, 3, 3]
    assert all(t.error is None and min(t.times) >= 0 for t in tasks)


def test_a_task_that_runs_out_of_memory_stops_and_the_others_go_on() -> None:
    calls: list[str] = []
    tasks = _tasks(calls, "ab")

    def oom() -> None:
        calls.append("x")
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    tasks.insert(1, TimedTask(key=("x", "train", 8), fn=oom))
    run_interleaved(tasks, rounds=4, warmup=1, device=CPU, progress=False)
    assert calls.count("x") == 1
    assert tasks[1].error.startswith("OOM (train, batch 8): CUDA out of memory")
    assert tasks[1].times == []
    assert [len(t.times) for t in (tasks[0], tasks[2])] == [4, 4]


def test_other_failures_are_reported_with_their_type() -> None:
    def bad() -> None:
        raise ValueError("Expected more than 1 value per channel when training")

    task = TimedTask(key=("m", "train", 1), fn=bad)
    run_interleaved([task], rounds=1, warmup=0, device=CPU, progress=False)
    assert (
        task.error
        == "ValueError (train, batch 1): Expected more than 1 value per channel when training"
    )


@pytest.mark.parametrize(
    ("exc", "oom"),
    [
        (torch.OutOfMemoryError("x"), True),
        (MemoryError(), True),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9"), True),
        (RuntimeError("shape mismatch"), False),
    ],
)
def test_out_of_memory_is_recognised(exc: BaseException, oom: bool) -> None:
    assert is_out_of_memory(exc) is oom


def test_summary_percentiles_and_throughput() -> None:
    times = [0.010, 0.020, 0.030, 0.040, 0.100]
    s = summarize(times, batch_size=4)
    ms = np.array(times) * 1000
    assert s["p50_ms"] == pytest.approx(30.0)
    assert s["p90_ms"] == pytest.approx(np.percentile(ms, 90))
    assert s["min_ms"] == pytest.approx(10.0) and s["n"] == 5
    assert s["images_per_s"] == pytest.approx(4 / 0.030)
    assert s["rounds_ms"] == pytest.approx([10.0, 20.0, 30.0, 40.0, 100.0])
    assert summarize([], 1) == {}


def test_paired_ratio_divides_out_a_drift_the_p50_ratio_keeps() -> None:
    """The machine slows down 3x over the run; entry a is 10 % faster than b in every round,
    up to a 5 % per-call noise. The paired interval holds 0.9 and excludes 1.0."""
    rng = np.random.default_rng(1)
    drift = np.linspace(1.0, 3.0, 40)
    b = 100 * drift * rng.uniform(0.95, 1.05, 40)
    a = 90 * drift * rng.uniform(0.95, 1.05, 40)
    p = paired_ratio(list(a), list(b))
    assert p is not None and p["n"] == 40
    assert p["low"] <= 0.9 <= p["high"] < 1.0
    assert p["low"] <= p["median"] <= p["high"]
    assert paired_ratio(list(a), list(b)) == p  # a fixed seed: the same record, the same interval


def test_paired_ratio_of_equal_timings_holds_one() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.uniform(90, 110, 30), rng.uniform(90, 110, 30)
    p = paired_ratio(list(a), list(b))
    assert p["low"] < 1.0 < p["high"]


def test_paired_ratio_uses_the_common_rounds() -> None:
    assert paired_ratio([1.0], [2.0]) is None
    p = paired_ratio([1.0, 1.0, 1.0], [2.0, 2.0])  # a task that stopped early: its rounds only
    assert p == {"median": 0.5, "low": 0.5, "high": 0.5, "n": 2}


def test_cpu_clock_leaves_out_time_the_process_does_not_run() -> None:
    wall = TimedTask(key=("w", "infer", 1), fn=lambda: time.sleep(0.05))
    cpu = TimedTask(key=("c", "infer", 1), fn=lambda: time.sleep(0.05))
    run_interleaved([wall], rounds=1, warmup=0, device=CPU, progress=False, clock=CLOCKS["wall"])
    run_interleaved([cpu], rounds=1, warmup=0, device=CPU, progress=False, clock=CLOCKS["cpu"])
    assert wall.times[0] >= 0.05 and cpu.times[0] < 0.02
