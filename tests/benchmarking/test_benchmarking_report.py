"""Report tables a researcher can trust: timing-noise warnings, accuracy side by side."""

from __future__ import annotations

from anchorage.benchmarking import EntryResult, Settings, markdown
from anchorage.benchmarking.report import noisy_comparisons
from anchorage.benchmarking.timing import summarize

ENV = {"device": "cpu", "device_name": "cpu", "torch": "x", "torchvision": "y", "torch_threads": 1}


def _entry(name: str, p50: float, p90: float, twin: str | None = None, **metrics: float):
    return EntryResult(
        name=name, source=name, kind="spec", task="detection", twin=twin,
        infer={1: {"p50_ms": p50, "p90_ms": p90, "images_per_s": 1000 / p50, "n": 5}},
        metrics=metrics,
    )  # fmt: skip


def test_a_difference_inside_the_spread_is_flagged() -> None:
    tv = _entry("tv:a", 10.0, 10.5)
    ours = _entry("ours", 10.8, 13.0, twin="tv:a")  # 0.8 ms apart, 2.2 ms spread: noise
    found = noisy_comparisons([tv, ours])
    assert [(n["entry"], n["other"], n["role"], n["batch"]) for n in found] == [
        ("ours", "tv:a", "twin", 1)
    ]
    assert abs(found[0]["spread_ms"] - 2.2) < 1e-9 and abs(found[0]["p50_diff_ms"] - 0.8) < 1e-9
    text = markdown([tv, ours], Settings(batch_sizes=(1,)), ENV)
    assert "### Timing noise" in text and "WARNING ours vs tv:a (inference, batch 1)" in text
    clear = _entry("ours", 14.0, 14.5, twin="tv:a")  # 4 ms apart, 0.5 ms spread: a real gap
    assert noisy_comparisons([tv, clear]) == []
    assert "Timing noise" not in markdown([tv, clear], Settings(batch_sizes=(1,)), ENV)


def _timed(name: str, rounds_ms: list[float], twin: str | None = None) -> EntryResult:
    return EntryResult(
        name=name, source=name, kind="spec", task="detection", twin=twin,
        infer={1: summarize([t / 1000 for t in rounds_ms], 1)},
    )  # fmt: skip


def test_with_round_times_the_paired_interval_decides() -> None:
    """A wide spread no longer hides a gap that holds in every round, and a ratio whose
    interval holds 1.0 is flagged with that interval."""
    tv = _timed("tv:a", [10.0, 14.0, 10.2, 14.2, 10.1, 14.1])
    steady = _timed("ours", [9.0, 12.6, 9.2, 12.8, 9.1, 12.7], twin="tv:a")  # 0.9x each round
    assert noisy_comparisons([tv, steady]) == []
    mixed = _timed("ours", [9.0, 15.4, 11.2, 12.8, 10.1, 14.1], twin="tv:a")
    (found,) = noisy_comparisons([tv, mixed])
    low, high = found["interval"]
    assert low <= 1.0 <= high and "spread_ms" not in found
    text = markdown([tv, mixed], Settings(batch_sizes=(1,)), ENV)
    assert f"WARNING ours vs tv:a (inference, batch 1): per-round ratio in [{low:.3f}" in text


def test_accuracy_has_one_row_per_metric_and_one_column_per_entry() -> None:
    a = _entry("a", 1.0, 1.0, **{"bbox/AP": 0.5, "bbox/AP50": 0.75})
    b = _entry("b", 9.0, 9.0, **{"bbox/AP": 0.25})
    text = markdown([a, b], Settings(batch_sizes=(1,)), ENV)
    table = text.split("### Accuracy")[1].strip().splitlines()
    assert table[0] == "| metric | a | b |"
    assert table[2] == "| bbox/AP | 0.5000 | 0.2500 |"
    assert table[3] == "| bbox/AP50 | 0.7500 | – |"
