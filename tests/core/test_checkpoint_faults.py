"""Checkpoint faults: full disk at save, empty files, torch's other refusal wording.

Reliability battery case 7 (disk full) and the "smaller" items (see
``benchmarks/results/reliability_battery.md``).
"""

from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path

import pytest
import torch

from anchorage.core import read_checkpoint, save_checkpoint
from anchorage.core.errors import CheckpointError


@pytest.mark.parametrize(
    "failure",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        RuntimeError("[enforce fail at inline_container.cc:671] . unexpected pos 64 vs 0"),
    ],
)
def test_full_disk_is_one_line_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch, failure: Exception
) -> None:
    # before: RuntimeError [enforce fail at inline_container.cc:671] traceback after training
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}})

    def full(*_args, **_kwargs):
        raise failure

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointError, match=f"disk full / not writable: {path}") as info:
        save_checkpoint(path, {"model": {"w": torch.zeros(2)}})
    assert "\n" not in str(info.value)
    monkeypatch.undo()
    assert torch.equal(read_checkpoint(path)["model"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left


def test_other_runtime_errors_are_not_called_a_full_disk(tmp_path: Path, monkeypatch) -> None:
    def bug(*_args, **_kwargs):
        raise RuntimeError("some bug")

    monkeypatch.setattr(torch, "save", bug)
    with pytest.raises(RuntimeError, match="some bug"):
        save_checkpoint(tmp_path / "x.pt", {})


def test_save_under_a_file_is_not_writable(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(CheckpointError, match="disk full / not writable"):
        save_checkpoint(tmp_path / "f" / "last.pt", {})


class _System:
    def __reduce__(self):
        import os

        return (os.system, ("true",))


def test_blocked_module_wording_is_reported_as_pickled_code(tmp_path: Path) -> None:
    # before: "not a readable checkpoint (corrupt or not a torch file)" for torch's
    # "Trying to load unsupported GLOBAL posix.system whose module posix is blocked"
    path = tmp_path / "evil.pt"
    torch.save({"model": _System()}, path)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert "refused to load: the file contains pickled code" in message
    assert "system" in message and "nothing in it was run" in message


def test_garbage_pickle_keeps_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(pickle.dumps([1, 2])[:-3] + b"\x00\x00")
    with pytest.raises(CheckpointError, match=r"junk.pt: not a readable checkpoint \S"):
        read_checkpoint(path)


def test_empty_checkpoint_gives_a_reason(tmp_path: Path) -> None:
    # before: "x.pt: not a readable checkpoint: " (the EOFError's empty text)
    path = tmp_path / "x.pt"
    path.touch()
    with pytest.raises(CheckpointError, match=r"x.pt: not a readable checkpoint: .*0 bytes; empty"):
        read_checkpoint(path)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def test_a_plain_pickle_with_code_is_refused_unrun_in_one_line(tmp_path: Path, recwarn) -> None:
    # before: "corrupt or not a torch file: Weights only load failed. In PyTorch 2.6, ..."
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"model": _RunsCode(tmp_path / "ran")}, f, protocol=4)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert str(info.value) == (
        f"{path}: not a readable checkpoint (corrupt, or not torch.save's format; the "
        "weights-only loader stopped at: Unsupported operand 149); nothing in it was run"
    )
    assert not (tmp_path / "ran").exists()
    assert not [w for w in recwarn if "pickle protocol" in str(w.message)]
