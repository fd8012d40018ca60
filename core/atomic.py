"""Atomic file writes: a temp file in the same folder, fsync, ``os.replace``.

A crash or ``kill -9`` mid-write leaves the previous file (or none) at the path, never a
partial one; a temp file it leaves behind is named ``.NAME.*.tmp`` (the trainer removes those
in its work dir at start). Checkpoints, COCO results and evaluation JSON go through here.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from .errors import AnchorageError


def write_atomically(
    path: str | Path,
    write: Callable[[IO[bytes]], None],
    *,
    error: type[AnchorageError] = AnchorageError,
    is_write_failure: Callable[[BaseException], bool] = lambda exc: False,
) -> Path:
    """Call ``write(file)`` on a temp file beside ``path``, then move it to ``path``.

    A full disk or an unwritable folder (``OSError``, or an exception ``is_write_failure``
    recognises) is ``error("disk full / not writable: PATH (reason); the previous file is
    unchanged")``, and the temp file is removed. Returns ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise error(f"disk full / not writable: {path}: {exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if not (isinstance(exc, OSError) or is_write_failure(exc)):
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise error(
            f"disk full / not writable: {path} ({reason}); the previous file is unchanged"
        ) from None
    fsync_dir(path.parent)
    return path


def write_text_atomically(
    path: str | Path, text: str, *, error: type[AnchorageError] = AnchorageError
) -> Path:
    """``write_atomically`` for UTF-8 text."""
    return write_atomically(path, lambda f: f.write(text.encode("utf-8")), error=error)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entry list (the rename) to disk, where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
