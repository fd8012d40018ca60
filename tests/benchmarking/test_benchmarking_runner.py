"""run_benchmark end to end on toy detectors: twins, failures, reports."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from anchorage.benchmarking import (
    EntryRequest,
    Settings,
    environment,
    markdown,
    plot,
    run_benchmark,
    to_json,
    twin_pairs,
    write_json,
)
from anchorage.benchmarking.runner import EntryResult
from anchorage.benchmarking.timing import summarize
from anchorage.core.errors import AnchorageError

sys.path.insert(0, str(Path(__file__).parent))
from bench_toys import CONVERTERS, ToyDetector, bench_toys, write_spec  # noqa: E402

FAST = Settings(
    batch_sizes=(1, 2),
    image_size=32,
    rounds=2,
    warmup=1,
    stage_iters=1,
    train=True,
    progress=False,
)


@pytest.fixture(scope="module")
def twin_run(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("specs")
    with pytest.MonkeyPatch.context() as mp, bench_toys(mp):
        requests = [
            EntryRequest(source="tv:toy"),
            EntryRequest(source=str(write_spec(folder)), twin="tv:toy"),
            EntryRequest(source=str(write_spec(folder, "guess.yaml"))),
        ]
        yield run_benchmark(requests, FAST, converters=CONVERTERS)


def test_twin_gets_converted_weights_and_identical_outputs(twin_run) -> None:
    tv, ours, guessed = twin_run
    assert tv.weights == "random (seed 0)"
    for r in (ours, guessed):  # explicit twin, and twin found among the run's baselines
        assert r.weights == "converted from tv:toy" and r.twin == "tv:toy"
        assert r.twin_check["same"] and r.twin_check["max_abs_diff"] == 0.0
        assert r.twin_check["detections"] == [5]
    assert ours.params == tv.params == 4 * 3 * 9 + 4 + 5 * 4 + 5
    assert ours.gflops == pytest.approx(tv.gflops) and ours.gflops > 0


def test_every_measure_is_filled(twin_run) -> None:
    for r in twin_run:
        assert r.errors == []
        for table in (r.infer, r.train):
            assert sorted(table) == [1, 2]
            assert all(t["n"] == 2 and 0 < t["p50_ms"] <= t["p90_ms"] for t in table.values())
        assert r.train_peak_mib > 0 and r.train_peak_batch == 1
        assert "profiler" in r.train_peak_method
    stages = twin_run[1].stages
    assert list(stages) == ["preprocess", "backbone", "head", "postprocess", "other", "total"]
    pairs = twin_pairs(twin_run)
    assert [(p["entry"], p["twin"]) for p in pairs] == [("toy", "tv:toy"), ("guess", "tv:toy")]
    assert sorted(pairs[0]["infer_ratio"]) == [1, 2] and pairs[0]["outputs_same"] is True


def test_reports(twin_run, tmp_path: Path) -> None:
    env = environment("cpu")
    text = markdown(twin_run, FAST, env)
    rows = [line for line in text.splitlines() if line.startswith("| tv:toy |")]
    assert rows[0].endswith("| 1.00 |")  # ratio of the first entry to itself
    assert "### Twins" in text and "### Stages" in text and "### Train step" in text
    record = json.loads(write_json(to_json(twin_run, FAST, env), tmp_path / "r.json").read_text())
    assert {"torch", "torchvision", "cuda", "device_name", "torch_threads"} <= set(
        record["environment"]
    )
    assert record["entries"][1]["infer"]["2"]["images_per_s"] > 0
    assert record["settings"]["batch_sizes"] == [1, 2]
    png = plot(twin_run, FAST, tmp_path / "plot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_out_of_memory_is_reported_in_its_row(tmp_path: Path, monkeypatch) -> None:
    forward = ToyDetector.forward

    def oom_at_batch_2(self, images, targets=None):
        if len(images) == 2 and not self.training:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return forward(self, images, targets)

    monkeypatch.setattr(ToyDetector, "forward", oom_at_batch_2)
    with bench_toys():
        requests = [
            EntryRequest(source=str(write_spec(tmp_path, "a.yaml"))),
            EntryRequest(source=str(write_spec(tmp_path, "dead.yaml", fail="oom"))),
        ]
        a, dead = run_benchmark(requests, FAST)
    assert a.infer[2] == {"error": a.errors[0]} and a.errors[0].startswith("OOM (infer, batch 2)")
    assert a.infer[1]["n"] == 2 and a.train[2]["n"] == 2  # the rest of the entry still ran
    assert dead.errors == ["OOM (measure): CUDA out of memory. Tried to allocate 20.00 GiB"]
    assert dead.infer == {} and dead.params is not None
    text = markdown([a, dead], FAST, environment("cpu"))
    assert "| a | random (seed 0) |" in text and "| 2 | OOM | OOM | OOM |" in text
    assert "- dead: OOM (measure)" in text


def test_a_twin_without_converter_keeps_random_weights_and_says_why(
    tmp_path: Path, monkeypatch
) -> None:
    settings = Settings(batch_sizes=(1,), image_size=32, rounds=1, warmup=0, progress=False)
    with bench_toys(monkeypatch):
        spec = write_spec(tmp_path)
        (r,) = run_benchmark([EntryRequest(source=str(spec), twin="tv:toy")], settings)
    assert r.weights == "random (seed 0)" and r.twin_check == {}
    assert r.errors == [
        "weights not converted from tv:toy: no converter from tv:toy for model type "
        "'bench_toy_detector' (converters: none)"
    ]


def test_entry_names_must_be_unique() -> None:
    requests = [EntryRequest(source="tv:ssd300_vgg16")] * 2
    with pytest.raises(AnchorageError, match=r"\['tv:ssd300_vgg16'\] appear more than once"):
        run_benchmark(requests, FAST)


def _result(name: str, infer_s: list[float], twin: str | None = None) -> EntryResult:
    r = EntryResult(name=name, source=name, kind="spec", task="detection", twin=twin)
    r.infer[2] = summarize(infer_s, 2)
    return r


@pytest.mark.parametrize(
    "ours, shown, verdict",
    [
        ([0.090, 0.091, 0.089, 0.090], True, "| yes |"),  # 0.9x in every round
        ([0.090, 0.115, 0.089, 0.114], False, "| yes, within noise |"),  # p50 1.02x, CI > 1.05
        ([0.110, 0.111, 0.109, 0.110], False, "| **NO** |"),
    ],
)
def test_twin_verdict_uses_the_paired_interval(ours, shown, verdict) -> None:
    twin = _result("hf:x", [0.100, 0.100, 0.100, 0.100])
    results = [twin, _result("ours", ours, twin="hf:x")]
    (pair,) = twin_pairs(results)  # the default target, 1.05, as markdown's FAST settings
    paired = pair["infer_paired"][2]
    assert paired["low"] <= paired["median"] <= paired["high"] and paired["n"] == 4
    assert pair["target_shown"] is shown
    text = markdown(results, FAST, environment("cpu")).splitlines()
    row = next(x for x in text if x.startswith("| ours | hf:x |"))  # the Twins table
    assert verdict in row and f"[{paired['low']:.3f}, {paired['high']:.3f}]" in row


def test_a_record_without_round_times_has_no_interval() -> None:
    twin, ours = _result("hf:x", [0.1, 0.1]), _result("ours", [0.09, 0.09], twin="hf:x")
    for r in (twin, ours):
        del r.infer[2]["rounds_ms"]
    (pair,) = twin_pairs([twin, ours])
    assert pair["infer_paired"] == {2: None} and pair["target_shown"] is None
    assert pair["within_target"] is True


def test_a_twin_is_named_by_label_or_by_source(tmp_path: Path, monkeypatch) -> None:
    settings = Settings(batch_sizes=(1,), image_size=32, rounds=1, warmup=0, progress=False)
    with bench_toys(monkeypatch):
        spec = str(write_spec(tmp_path))
        requests = [
            EntryRequest(source="tv:toy", label="ref"),
            EntryRequest(source=spec, label="by_source", twin="tv:toy"),
            EntryRequest(source=spec, label="by_label", twin="ref"),
        ]
        results = run_benchmark(requests, settings, converters=CONVERTERS)
    for r in results[1:]:
        assert r.twin == "ref" and r.weights == "converted from ref" and r.twin_check["same"]
    assert [p["twin"] for p in twin_pairs(results)] == ["ref", "ref"]
