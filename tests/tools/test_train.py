"""tools/train.py: end to end, SIGTERM/SIGINT → checkpoint + 130/143, resume, user errors."""

from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from anchorage.core import read_checkpoint
from anchorage.core.cli import run_tool

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "tests" / "core" / "engine" / "launch_tool.py"


def write_spec(toys, path: Path, **train) -> Path:
    path.write_text(yaml.safe_dump(toys.toy_spec(**train)))
    return path


def tool(*argv: str) -> int:
    """Run tools/train.py in-process (the toys are registered here)."""
    main = runpy.run_path(str(ROOT / "tools" / "train.py"))["main"]
    return run_tool(main, list(argv))


def test_sigterm_checkpoints_then_resume_finishes(toys, tmp_path: Path, capsys) -> None:
    sig = signal.SIGTERM
    spec = write_spec(toys, tmp_path / "s.yaml", epochs=500, eval_interval=0,
                      checkpoint_interval=0, log_interval=1)  # fmt: skip
    work = tmp_path / "work"
    cmd = [sys.executable, str(LAUNCHER), str(ROOT / "tools" / "train.py"), str(spec),
           "--work-dir", str(work), "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    log = work / "metrics.jsonl"
    deadline = time.monotonic() + 90
    while not (log.is_file() and log.read_text().strip()):  # training has started
        assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
        time.sleep(0.1)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and "resume with --resume" in err
    state = read_checkpoint(work / "last.pt")
    assert 1 <= state["iteration"] < 500 * 4
    # resume (with a shorter schedule) continues from that iteration and finishes
    epochs = state["epoch"] + 1
    code = tool(str(spec), "--work-dir", str(work), "--resume", "--no-progress",
                "--set", f"train.epochs={epochs}")  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "COCO bbox" in out and "Average Precision" in out
    done = json.loads(out.strip().splitlines()[-1])
    assert done["iteration"] == epochs * 4 and done["epoch"] == epochs
    assert f"iteration {state['iteration']}" in out  # "resumed from ... iteration N"
    assert "differs from the checkpoint's at ['train.epochs']" in out
    logged = [json.loads(x)["iteration"] for x in (work / "metrics.jsonl").read_text().splitlines()
              if '"train"' in x]  # fmt: skip
    assert logged == list(range(1, epochs * 4 + 1))  # one log: before and after the signal


def test_user_errors_exit_2_without_traceback(toys, tmp_path: Path, capsys) -> None:
    spec = write_spec(toys, tmp_path / "s.yaml")
    assert tool(str(spec), "--set", "train.optimizer.lr=-1") == 2
    err = capsys.readouterr().err
    assert "train.optimizer.lr" in err and "Traceback" not in err
    assert tool(str(tmp_path / "missing.yaml")) == 2
    assert "spec file not found" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert tool(str(spec), "--device", "cuda") == 2
        assert "CUDA is not available" in capsys.readouterr().err
    with pytest.raises(Exception, match="must be > 0"):
        tool(str(spec), "--set", "train.optimizer.lr=-1", "--debug")


def test_nan_loss_exits_2_naming_iteration(toys, tmp_path: Path, capsys) -> None:
    data = toys.toy_spec(epochs=2, eval_interval=0)
    data["model"]["nan_after"] = 2
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(data))
    assert tool(str(spec), "--work-dir", str(tmp_path / "w"), "--no-progress") == 2
    err = capsys.readouterr().err
    assert "non-finite loss at iteration 3" in err and "loss_box=nan" in err
    assert "Traceback" not in err and "last good checkpoint: none written yet" in err
    assert not (tmp_path / "w" / "last.pt").exists()


@pytest.fixture
def default_sigint() -> Iterator[None]:
    """Python's own SIGINT handler for the test, whatever this process started with (a shell
    in the background starts it with SIGINT ignored), and the previous one back after."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_sigint_in_process_exits_130_after_checkpoint(
    toys, tmp_path: Path, capsys, default_sigint: None
) -> None:
    spec = write_spec(toys, tmp_path / "s.yaml", epochs=100000, eval_interval=0,
                      checkpoint_interval=0, log_interval=1)  # fmt: skip
    log = tmp_path / "w" / "metrics.jsonl"

    def interrupt_once_training() -> None:
        deadline = time.monotonic() + 60
        while not (log.is_file() and log.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=interrupt_once_training, daemon=True)
    sender.start()
    code = tool(str(spec), "--work-dir", str(tmp_path / "w"), "--no-progress")
    sender.join()
    assert code == 130
    assert "stopped by SIGINT" in capsys.readouterr().err
    state = read_checkpoint(tmp_path / "w" / "last.pt")
    assert state["iteration"] >= 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_resume_from_foreign_or_malicious_checkpoint_exits_2(toys, tmp_path: Path, capsys) -> None:
    spec = write_spec(toys, tmp_path / "s.yaml", epochs=1, eval_interval=0)
    assert tool(str(spec), "--work-dir", str(tmp_path / "a"), "--no-progress") == 0
    capsys.readouterr()
    other = ["--set", "model.hidden=4", "--work-dir", str(tmp_path / "b"), "--no-progress"]
    assert tool(str(spec), "--resume-from", str(tmp_path / "a" / "last.pt"), *other) == 2
    err = capsys.readouterr().err
    # head: 4 box + 2 class + 1 background outputs by `hidden` inputs
    assert "head.weight: checkpoint (7, 8) vs model (7, 4)" in err and "Traceback" not in err
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"model": Payload(), "iteration": 1}, tmp_path / "evil.pt")
    assert tool(str(spec), "--resume-from", str(tmp_path / "evil.pt"), "--no-progress") == 2
    assert "refused to load" in capsys.readouterr().err and not marker.exists()


def test_demo_spec_runs_through_the_tool(tmp_path: Path, capsys) -> None:
    """The real default job (TinySSD on shapes), shrunk to two steps on four images."""
    small = [f"data.{s}.dataset.{k}" for s in ("train", "val") for k in ("root", "num_images")]
    overrides = [
        f"{small[0]}={tmp_path / 'cache'}", f"{small[1]}=4",
        f"{small[2]}={tmp_path / 'cache'}", f"{small[3]}=2",
        "data.train.batch_size=2", "data.val.batch_size=2",
        "train.max_iters=2", "train.warmup_iters=1", "train.log_images=1",
    ]  # fmt: skip
    argv = ["specs/tiny_ssd_shapes.yaml", "--work-dir", str(tmp_path / "w"), "--no-progress"]
    for item in overrides:
        argv += ["--set", item]
    assert tool(*argv) == 0
    out = capsys.readouterr().out
    assert "COCO bbox (2 images)" in out and "rectangle" in out
    assert json.loads(out.strip().splitlines()[-1])["iteration"] == 2
    state = read_checkpoint(tmp_path / "w" / "last.pt")
    assert state["spec"]["model"]["type"] == "single_shot" and state["iteration"] == 2


def test_the_model_is_built_once_with_its_composition_checks(
    toys, tmp_path: Path, monkeypatch, capsys
) -> None:
    built = []
    init = toys.ToyDetector.__init__

    def counting(self, cfg) -> None:  # noqa: ANN001
        built.append(torch.empty(0).device.type)  # "meta": the size estimate, no memory
        init(self, cfg)

    monkeypatch.setattr(toys.ToyDetector, "__init__", counting)
    spec = write_spec(toys, tmp_path / "s.yaml", epochs=1, eval_interval=0)
    work = tmp_path / "w"
    assert tool(str(spec), "--work-dir", str(work), "--no-progress") == 0
    assert built == ["meta", "cpu"]  # estimated, then built once
    # a composition error surfaces before --overwrite deletes the previous run's outputs
    bad = ("--set", "model.num_classes=7", "--overwrite")
    assert tool(str(spec), "--work-dir", str(work), "--no-progress", *bad) == 2
    assert "model.num_classes: 7" in capsys.readouterr().err
    assert (work / "last.pt").is_file()
