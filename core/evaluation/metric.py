"""The metric interface: accumulate model outputs and targets, then compute named numbers.

A metric sees every evaluation batch through ``update(outputs, targets)`` — ``outputs`` is what
the model returns in eval mode (detection: a list of per-image dicts with ``boxes`` [K,4] xyxy
pixels, ``scores`` [K], ``labels`` [K] and, for instance segmentation, ``masks`` [K,1,H,W]
float 0..1; semantic segmentation: ``{"out": [B,C+1,H,W]}`` logits) and ``targets`` the
dataset's target dicts for the same images. ``compute()`` returns flat keys such as
``bbox/AP``; ``summary()`` a printable table with per-class rows.

For evaluation under torch.distributed, ``state()`` returns a picklable CPU snapshot of what
was accumulated and ``merge(states)`` replaces the metric's state by the union of every rank's
snapshot; ``evaluate`` gathers them on every rank and rank 0 computes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class Metric:
    """Base class of registered metrics; subclasses implement every method below.

    The factory's ``Config`` declares ``class_names: tuple[str, ...] = injected(default=())``
    (label ``i`` is ``class_names[i - 1]``), passed by ``build_metrics`` from the dataset.
    ``task`` says which model outputs ``update`` takes: ``"detection"`` (list of per-image
    dicts) or ``"semantic"`` (``{"out": logits}``).
    """

    task: str = "detection"

    def reset(self) -> None:
        """Forget everything accumulated."""
        raise NotImplementedError

    def update(self, outputs: Any, targets: Sequence[dict[str, Any]]) -> None:
        """Accumulate one batch (tensors may be on any device; metrics copy to CPU)."""
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        """The metric's numbers under flat keys (e.g. ``bbox/AP50``)."""
        raise NotImplementedError

    def summary(self) -> str:
        """A printable table of the last ``compute()`` (computing it when needed)."""
        raise NotImplementedError

    def state(self) -> Any:
        """A picklable CPU snapshot of the accumulated state (for cross-rank gathering)."""
        raise NotImplementedError

    def merge(self, states: Sequence[Any]) -> None:
        """Replace the state by the union of ``states`` (one per rank, this rank's included)."""
        raise NotImplementedError
