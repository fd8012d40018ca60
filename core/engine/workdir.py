"""The work dir of a training run: writable, owned by one run at a time, never silently reused.

``prepare_work_dir(path, resume=..., overwrite=...)`` runs before anything is built:

1. ``path`` must be a folder that can be created and written: a file in its place, a file
   above it or a read-only / full disk is a ``WorkDirError`` now, not a traceback after
   training (a probe file is written and removed);
2. a lock (``fcntl.flock`` on ``path/.lock``, holding the owner's PID) keeps a second run out
   while the first is alive; the kernel drops it when the owner exits, even on ``kill -9``;
3. temp files of a save that was killed (``.last.pt.*.tmp``) are removed;
4. a previous run's outputs (``last.pt``, ``epoch_N.pt``, a non-empty ``metrics.jsonl``) are
   kept unless the caller resumes it or asks to overwrite it, which deletes exactly the run's
   own outputs (``RUN_OUTPUTS``) and nothing else in the folder.

``check_output_dir`` is steps 1 alone, for tools that write elsewhere (``infer.py --out``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO

from ..errors import AnchorageError

LOCK_NAME = ".lock"
RUN_OUTPUTS = (
    "last.pt",
    "epoch_*.pt",
    "metrics.jsonl",
    "spec.yaml",
    "tensorboard",
    "predictions",
    "pictures",
)
"""What a training run writes in its work dir (glob patterns); ``overwrite`` deletes these."""


NAME_MAX = 255  # bytes per file or folder name on Linux, macOS and Windows file systems
PATH_MAX = 4096  # bytes per path on Linux (the shortest common limit that applies)


class WorkDirError(AnchorageError):
    """The work dir (or an output folder) cannot be used: not writable, in use, or it holds a
    run that would be destroyed."""


def check_output_dir(path: str | Path, what: str = "work dir") -> Path:
    """Create ``path`` if needed and prove it writable (write and remove a probe file).

    Raises WorkDirError naming ``path`` when it is a file, lies under a file, or cannot be
    created or written (read-only, permissions, full disk).
    """
    path = Path(path)
    longest = max(path.parts, key=lambda part: len(os.fsencode(part)), default="")
    if len(os.fsencode(longest)) > NAME_MAX:
        raise WorkDirError(
            f"{what} {path}: a name in it is {len(os.fsencode(longest))} bytes; file systems "
            f"allow at most {NAME_MAX} bytes per name"
        )
    if len(os.fsencode(str(path.absolute()))) >= PATH_MAX:
        raise WorkDirError(f"{what} {path}: the path is longer than {PATH_MAX - 1} bytes")
    if path.exists() and not path.is_dir():
        raise WorkDirError(f"{what} {path} is a file, not a folder; pick another path")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise WorkDirError(f"{what} {path} cannot be created: {blocker} is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=path)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(b"probe")
                f.flush()
                os.fsync(f.fileno())
        finally:
            Path(probe).unlink(missing_ok=True)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise WorkDirError(f"disk full / not writable: {path} ({what}: {reason})") from None
    return path


FULL_OR_READ_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def disk_error(exc: OSError, work_dir: Path) -> WorkDirError | None:
    """``disk full / not writable: PATH`` for a write that failed for lack of space or a
    read-only file system (None for any other OSError, which stays as it is)."""
    if exc.errno not in FULL_OR_READ_ONLY:
        return None
    return WorkDirError(f"disk full / not writable: {exc.filename or work_dir} ({exc.strerror})")


class WorkDirLock:
    """An exclusive, non-blocking ``flock`` on ``folder/.lock`` that records the owner's PID."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self._file: IO[str] | None = None

    def acquire(self) -> WorkDirLock:
        """Take the lock; WorkDirError naming the owner's PID when another process holds it."""
        f = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "unknown"
            f.close()
            raise WorkDirError(
                f"work dir {self.path.parent} is in use by another training (PID {owner}); "
                "wait for it to end or pick another --work-dir"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        """Drop the lock (the file stays; an unlocked file means nobody owns the folder)."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.seek(0)
                self._file.truncate()
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def previous_run(folder: str | Path) -> list[str]:
    """Names of a previous run's results in ``folder`` (checkpoints, a non-empty log)."""
    folder = Path(folder)
    found = sorted(p.name for p in (*folder.glob("last.pt"), *folder.glob("epoch_*.pt")))
    log = folder / "metrics.jsonl"
    if log.is_file() and log.stat().st_size > 0:
        found.append(log.name)
    return found


def remove_run_outputs(folder: str | Path) -> list[str]:
    """Delete what a run wrote in ``folder`` (``RUN_OUTPUTS``); returns the names removed."""
    removed = []
    for pattern in RUN_OUTPUTS:
        for item in Path(folder).glob(pattern):
            shutil.rmtree(item) if item.is_dir() else item.unlink()
            removed.append(item.name)
    return sorted(removed)


def remove_stale_temps(folder: str | Path) -> list[str]:
    """Delete temp files of checkpoint writes that never finished (``.NAME.pt.*.tmp``) and
    write probes of a process killed mid-probe. Only called with the lock held, so no live
    run is writing them.
    """
    folder = Path(folder)
    stale = sorted([*folder.glob(".*.pt.*.tmp"), *folder.glob(".write-probe.*")])
    for item in stale:
        item.unlink(missing_ok=True)
    return [p.name for p in stale]


def prepare_work_dir(path: str | Path, *, resume: bool, overwrite: bool) -> WorkDirLock:
    """Steps 1-4 of the module docstring; returns the held lock (release it at the end)."""
    if resume and overwrite:
        raise WorkDirError("--resume and --overwrite contradict each other; choose one")
    folder = check_output_dir(path)
    lock = WorkDirLock(folder).acquire()
    try:
        remove_stale_temps(folder)
        if overwrite:
            remove_run_outputs(folder)
        elif not resume:
            found = previous_run(folder)
            if found:
                raise WorkDirError(
                    f"work dir {folder} holds a previous run ({', '.join(found)}); continue it "
                    "with --resume, start over with --overwrite (deletes it), or pick another "
                    "--work-dir"
                )
    except BaseException:
        lock.release()
        raise
    return lock
