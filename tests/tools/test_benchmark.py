"""tools/benchmark.py: suites, reports, bad input (exit 2, no traceback), AP, a real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from anchorage.core import save_checkpoint
from anchorage.core.cli import run_tool

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests" / "benchmarking"))

import benchmark  # noqa: E402
from bench_toys import CONVERTERS, ToyDetector, bench_toys, write_spec  # noqa: E402


def test_unknown_entry_lists_baselines_and_specs(capsys) -> None:
    assert run_tool(benchmark.main, ["tv:ssd301"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown benchmark entry 'tv:ssd301'")
    assert "tv:ssd300_vgg16" in err and "tv:fasterrcnn_resnet50_fpn" in err
    assert "tv:fcn_resnet50" in err and "specs in the zoo:" in err
    assert "Traceback" not in err


def test_invalid_spec_exits_2_naming_the_file(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text("model:\n  type: no_such_model\n")
    assert run_tool(benchmark.main, [str(spec)]) == 2
    err = capsys.readouterr().err
    assert str(spec) in err and "model.type: unknown model 'no_such_model'" in err
    assert "Traceback" not in err


def test_invalid_suite_exits_2_with_the_key_path(tmp_path: Path, capsys) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text("entries:\n  - {entry: a.yaml, twin: ssd300}\n")
    assert run_tool(benchmark.main, ["--suite", str(suite)]) == 2
    err = capsys.readouterr().err
    assert f"{suite}: entries[0].twin:" in err and "tv:NAME" in err


def test_checkpoint_needs_a_dataset(tmp_path: Path, capsys) -> None:
    args = ["tv:ssd300_vgg16", "--checkpoint", "tv:ssd300_vgg16=w.pt"]
    assert run_tool(benchmark.main, args) == 2
    assert "--checkpoint needs --dataset" in capsys.readouterr().err


def test_suite_with_twins_writes_table_json_and_plot(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(benchmark, "converters", lambda: CONVERTERS)
    write_spec(tmp_path)
    (tmp_path / "suite.yaml").write_text(
        "settings: {batch_sizes: [4], image_size: 32, rounds: 1, warmup: 0, stage_iters: 1}\n"
        "entries:\n  - tv:toy\n  - {entry: toy.yaml, twin: 'tv:toy', label: mine}\n"
        "  - {entry: toy.yaml, label: unused}\n"
    )
    out = tmp_path / "out"
    args = ["--suite", str(tmp_path / "suite.yaml"), "--only", "tv:toy,mine", "--batch-sizes",
            "1,2", "--train", "--json", f"{out}/r.json", "--plot", f"{out}/r.png",
            "--markdown", f"{out}/r.md", "--no-progress", "--clock", "cpu"]  # fmt: skip
    with bench_toys(monkeypatch):
        assert run_tool(benchmark.main, args) == 0
    text = capsys.readouterr().out
    assert "| mine | converted from tv:toy |" in text and "unused" not in text
    assert "| mine | tv:toy | yes | b1: " in text  # twin table: same outputs
    assert (out / "r.md").read_text() == text[:-1]  # print adds one newline
    record = json.loads((out / "r.json").read_text())
    assert record["settings"]["batch_sizes"] == [1, 2] and record["settings"]["image_size"] == 32
    assert record["settings"]["clock"] == "cpu" and "process CPU time" in text
    assert [e["name"] for e in record["entries"]] == ["tv:toy", "mine"]
    assert record["entries"][1]["train"]["1"]["n"] == 1
    assert record["environment"]["device"] == "cpu" and record["environment"]["torch"]
    assert (out / "r.png").stat().st_size > 1000


def test_ap_from_a_checkpoint_on_a_dataset(tmp_path: Path, monkeypatch, capsys) -> None:
    with bench_toys():
        spec = write_spec(tmp_path)
        torch.manual_seed(1)
        weights = save_checkpoint(
            tmp_path / "w.pt", {"model": ToyDetector(ToyDetector.Config()).state_dict()}
        )
        data = tmp_path / "data.yaml"
        data.write_text(
            "_base_: _data/shapes_detection.yaml\n"
            "data:\n  val:\n    dataset: {type: shapes, split: val, num_images: 4}\n"
        )
        args = [str(spec), "--checkpoint", f"toy={weights}", "--dataset", str(data),
                "--image-size", "32", "--rounds", "1", "--warmup", "0", "--stage-iters", "0",
                "--no-progress", "--json", str(tmp_path / "r.json")]  # fmt: skip
        assert run_tool(benchmark.main, args) == 0
    text = capsys.readouterr().out
    entry = json.loads((tmp_path / "r.json").read_text())["entries"][0]
    assert entry["ap"][0] == "bbox/AP" and 0.0 <= entry["ap"][1] <= 1.0
    assert "| metric | toy |" in text and "| bbox/AP | " in text


@pytest.mark.slow
def test_tool_runs_a_torchvision_baseline_end_to_end(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "tools" / "benchmark.py"), "tv:lraspp_mobilenet_v3_large",
           "--image-size", "64", "--rounds", "1", "--warmup", "0", "--stage-iters", "1",
           "--threads", "1",
           "--json", str(tmp_path / "r.json")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| tv:lraspp_mobilenet_v3_large | random (seed 0) |" in proc.stdout
    assert "benchmark: 100%" in proc.stderr  # the tqdm progress bar
    entry = json.loads((tmp_path / "r.json").read_text())["entries"][0]
    assert entry["task"] == "semantic" and entry["errors"] == []
    assert entry["infer"]["1"]["p50_ms"] > 0 and entry["gflops"] > 0
    assert entry["stages"]["backbone"] > 0


def test_converters_load_the_plugins_that_register_them(monkeypatch) -> None:
    import anchorage.core.plugins as plugins

    calls = []
    real = plugins.ensure_plugins_loaded
    monkeypatch.setattr(plugins, "ensure_plugins_loaded", lambda: calls.append(real()))
    table = benchmark.converters()
    assert calls == [None]  # model modules register their converters when the plugins load
    assert {"single_shot", "two_stage", "semantic_segmentation"} <= set(table)
