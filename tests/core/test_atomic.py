"""Atomic writes: a failure or a kill mid-write never leaves a partial file at the path."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from anchorage.core import AnchorageError
from anchorage.core.atomic import write_atomically, write_text_atomically


def test_a_full_disk_keeps_the_previous_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = write_text_atomically(tmp_path / "dets.json", "[1]")

    def full(f) -> None:  # noqa: ANN001
        f.write(b"[2, ")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(AnchorageError) as info:
        write_atomically(path, full)
    assert str(info.value) == (
        f"disk full / not writable: {path} ([Errno 28] No space left on device); "
        "the previous file is unchanged"
    )
    assert path.read_text() == "[1]" and [p.name for p in tmp_path.iterdir()] == ["dets.json"]


def test_other_errors_pass_through_and_leave_no_temp(tmp_path: Path) -> None:
    def bug(f) -> None:  # noqa: ANN001
        raise KeyError("bug")

    with pytest.raises(KeyError):
        write_atomically(tmp_path / "x.json", bug)
    assert list(tmp_path.iterdir()) == []


def test_kill_9_mid_write_leaves_no_partial_file(tmp_path: Path) -> None:
    """A writer killed half-way through: the path still holds the previous results."""
    path = write_text_atomically(tmp_path / "dets.json", json.dumps([{"score": 1.0}]))
    script = (
        "import sys, time\n"
        "from anchorage.core.atomic import write_atomically\n"
        "def slow(f):\n"
        "    f.write(b'[' + b'0, ' * 1000)\n"
        "    f.flush(); print('writing', flush=True); time.sleep(60)\n"
        f"write_atomically({str(path)!r}, slow)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert json.loads(path.read_text()) == [{"score": 1.0}]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "dets.json"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".dets.json.")  # a named temp
