"""SIGINT / SIGTERM: finish the current step, checkpoint, exit 130 / 143.

``StopSignals`` installs handlers that only record the signal; the training loop checks
``requested`` at each step boundary, writes a checkpoint and raises ``TrainingStopped``,
which the tool turns into exit status 128 + signal number (130 for SIGINT, 143 for
SIGTERM). A second signal while stopping restores the default handler's behaviour
(immediate KeyboardInterrupt / termination).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingStopped(Exception):
    """Training ended early on a signal, after writing a checkpoint."""

    def __init__(self, signum: int, checkpoint: str | None) -> None:
        self.signum = signum
        self.checkpoint = checkpoint
        name = signal.Signals(signum).name
        where = f"; checkpoint: {checkpoint}" if checkpoint else ""
        super().__init__(f"stopped by {name} at a step boundary{where}")

    @property
    def exit_code(self) -> int:
        """128 + the signal number (130 SIGINT, 143 SIGTERM)."""
        return 128 + self.signum


class StopSignals:
    """Context manager recording SIGINT/SIGTERM instead of dying mid-step.

    Handlers are only installed in the main thread (signal module restriction); elsewhere
    it is a no-op that never requests a stop.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        """A stop was requested by a signal."""
        return self.signum is not None

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is not None:  # second signal: give up waiting
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        self.signum = signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()
