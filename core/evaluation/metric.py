"""The metric interface: accumulate model outputs and targets, then compute named numbers.

A metric sees every evaluation batch through ``update(outputs, targets)``: ``outputs`` is what
every model returns in eval mode, one dict per image (``boxes`` [K,4] xyxy pixels, ``scores``
[K], ``labels`` [K]; ``masks`` [K,1,H,W] float 0..1 for instance segmentation; ``sem_seg``
[C+1,H,W] logits for semantic segmentation, at the image's size), and ``targets`` the dataset's
target dicts for the same images (plain tensors, as collated). A metric reads the keys it
needs and names a missing one in its error. ``compute()`` returns flat keys such as
``bbox/AP``; ``summary()`` a printable table with per-class rows.

State and distributed reduction are ``torchmetrics.Metric``'s: a metric declares its state
with ``add_state`` (a summed tensor, or a list of tensors concatenated across ranks) and, under
torch.distributed, ``compute()`` gathers every rank's state first, so every rank computes the
same numbers. ``merge_state(other)`` adds another instance's state (what the gathering does).
States live on the metric's device: ``evaluate`` moves metrics to the model's device.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torchmetrics


class Metric(torchmetrics.Metric):
    """Base class of registered metrics; subclasses implement ``update``, ``compute`` and
    ``summary`` and declare their state in ``__init__`` (after ``super().__init__()``).

    The factory's ``Config`` declares ``class_names: tuple[str, ...] = injected(default=())``
    (label ``i`` is ``class_names[i - 1]``), passed by ``build_metrics`` from the dataset.
    """

    full_state_update = False

    def update(self, outputs: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]]) -> None:
        """Accumulate one batch (tensors may be on any device)."""
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        """The metric's numbers under flat keys (e.g. ``bbox/AP50``), over every rank's state."""
        raise NotImplementedError

    def summary(self) -> str:
        """A printable table of ``compute()``'s numbers with per-class rows."""
        raise NotImplementedError

    def write_pictures(self, folder: str | Path) -> list[Path]:
        """Draw what ``compute()`` last computed as image files in ``folder`` (e.g. a confusion
        matrix); returns the paths written. Called on rank 0 after the final evaluation
        (``WORK_DIR/pictures``) and by ``tools/eval.py --pictures DIR``. Default: none."""
        return []

    def merge_state(self, incoming_state: dict[str, Any] | torchmetrics.Metric) -> None:
        """Add another instance's (or a state dict's) state to this one's."""
        super().merge_state(incoming_state)
        self._computed = None  # a result cached before the merge no longer holds
