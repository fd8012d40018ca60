"""tools/train.py on the reliability battery: exit 2 with one line, nothing lost.

Cases 1, 2, 3, 4 and 9 from the command line (see
``benchmarks/results/reliability_battery.md``).
"""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from anchorage.core import read_checkpoint
from anchorage.core.cli import run_tool

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "tests" / "core" / "engine" / "launch_tool.py"


def tool(*argv: str) -> int:
    main = runpy.run_path(str(ROOT / "tools" / "train.py"))["main"]
    return run_tool(main, list(argv))


def demo_args(tmp_path: Path, *extra: str) -> list[str]:
    """The demo job (TinySSD on shapes) on 4 training and 2 validation images."""
    sets = [
        f"data.train.dataset.root={tmp_path / 'cache'}", "data.train.dataset.num_images=4",
        f"data.val.dataset.root={tmp_path / 'cache'}", "data.val.dataset.num_images=2",
        "data.train.batch_size=4", "data.val.batch_size=2", "train.log_images=0", *extra,
    ]  # fmt: skip
    argv = ["specs/tiny_ssd_shapes.yaml", "--work-dir", str(tmp_path / "w"), "--no-progress"]
    for item in sets:
        argv += ["--set", item]
    return argv


def test_blown_up_weights_stop_the_demo_and_keep_a_finite_checkpoint(tmp_path, capsys) -> None:
    # before: with lr=1.0e+6 the run stopped at a NaN loss naming last.pt as the last good
    # checkpoint, which held 34 non-finite tensors (BatchNorm running_var went Inf first)
    argv = demo_args(tmp_path, "train.epochs=12", "train.optimizer.lr=1.0e+6")
    assert tool(*argv) == 2
    err = capsys.readouterr().err
    assert "non-finite model state after iteration" in err and "running_var" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    state = read_checkpoint(tmp_path / "w" / "last.pt")
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def test_rerun_of_the_demo_needs_resume_or_overwrite(tmp_path: Path, capsys) -> None:
    # before: a second `make demo` replaced last.pt and truncated metrics.jsonl silently
    argv = demo_args(tmp_path, "train.max_iters=1", "train.warmup_iters=0")
    assert tool(*argv) == 0
    first = (tmp_path / "w" / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert tool(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resume" in err and "--overwrite" in err
    assert (tmp_path / "w" / "metrics.jsonl").read_text() == first
    assert tool(*argv, "--overwrite") == 0  # what `make demo` passes
    makefile = (ROOT / "Makefile").read_text()
    assert (
        "tools/train.py specs/tiny_ssd_shapes.yaml --work-dir $(WORK_DIR) --overwrite" in makefile
    )


def test_second_training_in_the_same_work_dir_exits_2_naming_the_first(
    toys, tmp_path: Path, capsys
) -> None:
    # before: both exited 0 and 3 of 6 metrics.jsonl lines were invalid JSON. The first run
    # is stood in for by a process holding the work dir's lock as a training does (the lock
    # between two real trainings: tests/core/engine/test_faults.py)
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(toys.toy_spec(epochs=1, eval_interval=0)))
    work = tmp_path / "w"
    work.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(work)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert tool(str(spec), "--work-dir", str(work), "--no-progress") == 2
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert f"in use by another training (PID {holder.pid})" in err and "Traceback" not in err
    assert not (work / "metrics.jsonl").exists()


HOLD_LOCK = """
import fcntl, os, sys, time
f = open(os.path.join(sys.argv[1], ".lock"), "a+")
fcntl.flock(f.fileno(), fcntl.LOCK_EX)
f.write(f"{os.getpid()}\\n"); f.flush()
print("locked", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model: " + "[" * 5000 + "]" * 5000, "nested deeper than 100 levels"),
        ("model:\n  ? [1, 2]\n  : x\n", "mapping key must be a scalar"),
    ],
)
def test_odd_yaml_is_exit_2_with_one_line(tmp_path: Path, capsys, text: str, expected: str) -> None:
    # before: RecursionError / TypeError tracebacks
    spec = tmp_path / "s.yaml"
    spec.write_text(text)
    assert tool(str(spec), "--work-dir", str(tmp_path / "w")) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_huge_num_classes_is_exit_2_before_building(tmp_path: Path, capsys) -> None:
    # before: torch overflow while building the model
    argv = demo_args(tmp_path, "model.num_classes=99999999999999999999")
    assert tool(*argv) == 2
    err = capsys.readouterr().err
    assert "integer 99999999999999999999 is out of range" in err
    assert not (tmp_path / "w").exists()
