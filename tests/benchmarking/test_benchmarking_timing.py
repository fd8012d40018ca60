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
    assert summarize([], 1) == {}


def test_cpu_clock_leaves_out_time_the_process_does_not_run() -> None:
    wall = TimedTask(key=("w", "infer", 1), fn=lambda: time.sleep(0.05))
    cpu = TimedTask(key=("c", "infer", 1), fn=lambda: time.sleep(0.05))
    run_interleaved([wall], rounds=1, warmup=0, device=CPU, progress=False, clock=CLOCKS["wall"])
    run_interleaved([cpu], rounds=1, warmup=0, device=CPU, progress=False, clock=CLOCKS["cpu"])
    assert wall.times[0] >= 0.05 and cpu.times[0] < 0.02
