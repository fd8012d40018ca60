"""tools/plot_metrics.py: loss terms, lr and eval metrics of several runs in one PNG."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
from PIL import Image

from anchorage.core import Spec
from anchorage.core.cli import run_tool
from anchorage.core.engine import train
from anchorage.core.engine.curves import panels, read_metrics

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def tool(*argv: str) -> int:
    main = runpy.run_path(str(ROOT / "tools" / "plot_metrics.py"))["main"]
    return run_tool(main, list(argv))


@pytest.fixture
def runs(toys, tmp_path: Path) -> list[Path]:
    dirs = []
    for name, lr in (("lr_0.05", 0.05), ("lr_0.2", 0.2)):
        data = toys.toy_spec(epochs=3, log_interval=1, eval_interval=1, log_images=0)
        data["train"]["optimizer"]["lr"] = lr
        data["train"]["lr_scheduler"] = {"type": "multistep", "milestones": [2], "gamma": 0.1}
        train(Spec.from_dict(data), tmp_path / name)
        dirs.append(tmp_path / name)
    return dirs


def test_two_runs_overlaid(runs: list[Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "curves.png"
    assert tool(*map(str, runs), "--out", str(out)) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    with Image.open(out) as image:
        assert image.size == (1260, 900)  # 7 panels: 3 columns x 3 rows
    chosen = panels({r.name: read_metrics(r) for r in runs})
    assert [p[0] for p in chosen] == [
        "train loss", "train loss_box", "train loss_cls", "train lr",
        "val bbox/AP", "val bbox/AP50", "val bbox/AP75",
    ]  # fmt: skip


def test_metrics_option_and_errors(runs: list[Path], tmp_path: Path, capsys) -> None:
    assert tool(str(runs[0]), "--metrics", "bbox/AR100") == 0
    assert (runs[0] / "metrics.png").is_file()  # default: beside the first run's metrics
    assert tool(str(runs[0]), "--metrics", "bbox/nope") == 2
    assert "--metrics bbox/nope: no such metric" in capsys.readouterr().err
    assert tool(str(tmp_path / "missing")) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    bad = tmp_path / "bad" / "metrics.jsonl"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"kind": "train"}) + "\n")
    assert tool(str(bad.parent)) == 2
    assert "metrics.jsonl:1: not a metrics line" in capsys.readouterr().err


def test_resumed_rows_count_once(tmp_path: Path) -> None:
    rows = [
        {"kind": "train", "epoch": 1, "iteration": 2, "loss": 3.0},
        {"kind": "train", "epoch": 1, "iteration": 4, "loss": 2.0},
        {"kind": "train", "epoch": 1, "iteration": 4, "loss": 1.5},  # written again on resume
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert [r["loss"] for r in read_metrics(tmp_path)["train"]] == [3.0, 1.5]
