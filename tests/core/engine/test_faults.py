"""Training faults: a blown-up model is never saved, the work dir is never silently reused.

Reliability battery cases 1, 3, 4 and 7 and the stale temp files (see
``benchmarks/results/reliability_battery.md``).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from anchorage.core import Spec, read_checkpoint
from anchorage.core.engine import TrainingDiverged, train
from anchorage.core.engine.trainer import Trainer
from anchorage.core.engine.workdir import WorkDirError, WorkDirLock, check_output_dir
from anchorage.core.errors import AnchorageError

pytestmark = pytest.mark.slow


def quick(toys, **train_cfg) -> Spec:
    cfg = {"epochs": 1, "eval_interval": 0, "log_images": 0, **train_cfg}
    return Spec.from_dict(toys.toy_spec(**cfg))


def test_inf_buffer_with_finite_loss_stops_and_keeps_the_good_checkpoint(toys, tmp_path) -> None:
    # before: the run ended with exit 0 and last.pt held the Inf buffer
    data = toys.toy_spec(epochs=3, eval_interval=0, log_images=0)
    data["model"]["inf_buffer_after"] = 5  # the forward of iteration 6 (epoch 2) blows it up
    with pytest.raises(TrainingDiverged) as info:
        train(Spec.from_dict(data), tmp_path)
    message = str(info.value)
    assert "non-finite model state after iteration 5" in message
    assert "1 tensor (running_var)" in message and "nothing was saved" in message
    assert f"last good checkpoint: {tmp_path / 'last.pt'}" in message
    kept = read_checkpoint(tmp_path / "last.pt")
    assert kept["iteration"] == 4
    assert all(torch.isfinite(t).all() for t in kept["model"].values())


def test_checkpoint_refuses_a_nonfinite_parameter(toys, tmp_path: Path) -> None:
    trainer = Trainer(quick(toys), tmp_path)
    trainer.setup()
    try:
        with torch.no_grad():
            trainer.model.head.weight.fill_(3e38)  # the flag's float32 sum overflows ...
        trainer.checkpoint()  # ... but the exact check finds every value finite
        with torch.no_grad():
            trainer.model.head.weight[0, 0] = float("nan")
        with pytest.raises(TrainingDiverged, match=r"1 tensor \(head.weight\)"):
            trainer.checkpoint()
    finally:
        trainer.logger.close()
        trainer._lock.release()
    assert (read_checkpoint(tmp_path / "last.pt")["model"]["head.weight"] == 3e38).all()


def test_rerun_without_resume_refuses_then_overwrite_starts_over(toys, tmp_path: Path) -> None:
    # before: the second run replaced last.pt and truncated metrics.jsonl silently
    train(quick(toys), tmp_path)
    before = (tmp_path / "metrics.jsonl").read_text()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(WorkDirError) as info:
        train(quick(toys), tmp_path)
    message = str(info.value)
    assert "holds a previous run (last.pt, metrics.jsonl)" in message
    assert "--resume" in message and "--overwrite" in message and "\n" not in message
    assert (tmp_path / "metrics.jsonl").read_text() == before
    (tmp_path / "epoch_9.pt").write_bytes(b"old")
    result = train(quick(toys, epochs=2), tmp_path, overwrite=True)
    assert result["iteration"] == 8
    assert not (tmp_path / "epoch_9.pt").exists() and (tmp_path / "notes.txt").exists()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    logged = [json.loads(x)["iteration"] for x in lines if '"train"' in x]
    assert logged == [2, 4, 6, 8]  # the new run's log only
    with pytest.raises(WorkDirError, match="contradict"):
        train(quick(toys), tmp_path, resume=True, overwrite=True)


def test_second_run_in_a_locked_work_dir_names_the_owner(toys, tmp_path: Path) -> None:
    # before: both runs exited 0 and interleaved metrics.jsonl
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(
            WorkDirError, match=f"in use by another training \\(PID {holder.pid}\\)"
        ):
            train(quick(toys), tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "metrics.jsonl").exists()
    train(quick(toys), tmp_path)  # the kernel dropped the dead owner's lock
    with open(tmp_path / ".lock") as f:  # and this run released its own
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


HOLD_LOCK = """
import fcntl, os, sys, time
f = open(os.path.join(sys.argv[1], ".lock"), "a+")
fcntl.flock(f.fileno(), fcntl.LOCK_EX)
f.write(f"{os.getpid()}\\n"); f.flush()
print("locked", flush=True)
time.sleep(120)
"""


def test_lock_is_exclusive_within_a_process_too(tmp_path: Path) -> None:
    first = WorkDirLock(tmp_path).acquire()
    with pytest.raises(WorkDirError, match=f"PID {os.getpid()}"):
        WorkDirLock(tmp_path).acquire()
    first.release()
    WorkDirLock(tmp_path).acquire().release()


def test_stale_temp_files_are_removed_at_start(toys, tmp_path: Path) -> None:
    # before: 0-byte .last.pt.*.tmp files of a killed save stayed forever
    stale = [tmp_path / n for n in (".last.pt.abc123.tmp", ".epoch_1.pt.x.tmp", ".write-probe.q")]
    for path in stale:
        path.touch()
    train(quick(toys), tmp_path)
    assert not any(p.exists() for p in stale)


def test_work_dir_that_is_a_file_or_under_a_file(toys, tmp_path: Path) -> None:
    # before: FileExistsError / NotADirectoryError tracebacks
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WorkDirError, match=f"work dir {blocker} is a file"):
        train(quick(toys), blocker)
    with pytest.raises(WorkDirError, match=f"cannot be created: {blocker} is a file"):
        train(quick(toys), blocker / "sub" / "dir")


def test_unwritable_work_dir_fails_before_training(toys, tmp_path: Path, monkeypatch) -> None:
    # before: OSError traceback (exit 1); the probe write fails here as on a read-only mount
    import anchorage.core.engine.workdir as workdir

    def read_only(*_args, **_kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(workdir.tempfile, "mkstemp", read_only)
    built = []
    monkeypatch.setattr(Trainer, "_build_data", lambda self: built.append(1))
    with pytest.raises(WorkDirError, match=f"disk full / not writable: {tmp_path / 'w'}"):
        train(quick(toys), tmp_path / "w")
    assert not built  # refused before the data (and the model) were built


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_folder_is_refused(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(WorkDirError, match="disk full / not writable"):
            check_output_dir(tmp_path)
    finally:
        tmp_path.chmod(0o700)


def test_full_disk_at_save_is_exit_2_with_the_old_checkpoint(toys, tmp_path, monkeypatch) -> None:
    # before: trained, then RuntimeError [enforce fail at inline_container.cc:671]
    train(quick(toys), tmp_path)
    good = read_checkpoint(tmp_path / "last.pt")["model"]["head.weight"]

    def full(*_args, **_kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:671] . unexpected pos 3 vs 0")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(AnchorageError, match="disk full / not writable"):
        train(quick(toys, epochs=2), tmp_path, resume=True)
    monkeypatch.undo()
    assert torch.equal(read_checkpoint(tmp_path / "last.pt")["model"]["head.weight"], good)


def test_full_disk_while_logging_is_one_line(toys, tmp_path: Path, monkeypatch) -> None:
    from anchorage.core.engine.logging import RunLogger

    def full(self, *_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "metrics.jsonl"))

    monkeypatch.setattr(RunLogger, "record", full)
    with pytest.raises(WorkDirError, match=r"disk full / not writable: .*metrics.jsonl \(No space"):
        train(quick(toys), tmp_path)


def test_a_name_over_255_bytes_is_one_line_before_anything_is_created(tmp_path: Path) -> None:
    from anchorage.core.engine.workdir import check_output_dir

    too_long = tmp_path / ("é" * 128)  # 256 bytes in UTF-8, 128 characters
    with pytest.raises(WorkDirError, match=r"a name in it is 256 bytes; file systems allow at"):
        check_output_dir(too_long)
    assert list(tmp_path.iterdir()) == []
    assert check_output_dir(tmp_path / ("w" * 255)).is_dir()  # the limit itself is fine


def test_unicode_and_255_byte_work_dirs_train(toys, tmp_path: Path) -> None:
    for name in ("wörk 日本 run", "w" * 255):
        train(Spec.from_dict(toys.toy_spec(epochs=1, eval_interval=0)), tmp_path / name)
        assert read_checkpoint(tmp_path / name / "last.pt")["iteration"] > 0
