"""Run logging: JSON-lines metrics, TensorBoard scalars and images, a tqdm progress bar.

Only rank 0 logs (other ranks get a logger whose methods do nothing). Files in the work
dir: ``metrics.jsonl`` (one JSON object per line: ``{"kind": "train" or the evaluated split
("val", "test"), "epoch": the 1-based epoch the weights come from, "iteration", "time",
...numbers}``) and ``tensorboard/`` (event files: ``train/<loss term>``,
``train/lr``, ``train/images_per_s``, ``<split>/<metric>``, ``<split>/predictions`` images)
and, after the final evaluation, ``predictions/<i>.png`` (the same drawn predictions as files).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torchvision.io import write_png

from .pictures import with_ground_truth
from .visualize import LEGIBLE_SIZE, draw_prediction


class LossWindow:
    """Sums of the logged step values since the last flush, with a count per key
    (``grad_norm`` appears only on the steps that end an accumulation window)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: Mapping[str, float]) -> None:
        """Add one step's values."""
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def flush(self) -> dict[str, float]:
        """The mean of every key since the last flush (empty when nothing was added)."""
        means = {k: v / self.counts[k] for k, v in self.sums.items()}
        self.sums, self.counts = {}, {}
        return means


class RunLogger:
    """Writes metrics to ``work_dir`` (when ``enabled``) and shows progress (when ``progress``)."""

    def __init__(
        self,
        work_dir: str | Path,
        *,
        enabled: bool = True,
        progress: bool = True,
        append: bool = False,
    ) -> None:
        """``append``: continue ``metrics.jsonl`` (a resumed run); otherwise start it anew."""
        self.work_dir = Path(work_dir)
        self.enabled = enabled
        self.progress = progress and enabled
        self._writer: Any = None
        self._jsonl = None
        self._bar: Any = None
        if enabled:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            mode = "a" if append else "w"
            self._jsonl = open(self.work_dir / "metrics.jsonl", mode, encoding="utf-8")

    @property
    def writer(self) -> Any:
        """The TensorBoard SummaryWriter (created on first use)."""
        if self._writer is None and self.enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.work_dir / "tensorboard"))
        return self._writer

    def record(self, kind: str, epoch: int, iteration: int, values: Mapping[str, float]) -> None:
        """One JSON line plus TensorBoard scalars ``<kind>/<key>`` at ``iteration``."""
        if not self.enabled:
            return
        clean = {k: _number(v) for k, v in values.items()}
        line = {"kind": kind, "epoch": epoch, "iteration": iteration, "time": time.time()}
        self._jsonl.write(json.dumps({**line, **clean}) + "\n")
        self._jsonl.flush()
        for key, value in clean.items():
            if value is not None:
                self.writer.add_scalar(f"{kind}/{key}", value, iteration)

    def images(
        self,
        tag: str,
        images: Sequence[torch.Tensor],
        outputs: Sequence[Any],
        class_names: Sequence[str],
        iteration: int,
        score_thresh: float = 0.3,
        *,
        save: bool = False,
        targets: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Images [3,H,W] with their predictions drawn (boxes or overlays) to TensorBoard and,
        with ``save``, to ``work_dir/predictions/<i>.png``; with ``targets`` the ground truth
        is drawn beside each prediction (left: ground truth, right: prediction)."""
        if not self.enabled:
            return
        folder = self.work_dir / "predictions"
        if save:
            folder.mkdir(exist_ok=True)
        for i, (image, output) in enumerate(zip(images, outputs)):
            drawn = draw_prediction(image, output, class_names, score_thresh, LEGIBLE_SIZE)
            if targets is not None:
                drawn = with_ground_truth(image, targets[i], drawn, class_names, LEGIBLE_SIZE)
            self.writer.add_image(f"{tag}/{i}", drawn, iteration)
            if save:
                write_png(drawn.cpu(), str(folder / f"{i}.png"))

    def start_epoch(self, epoch: int, total: int, initial: int = 0) -> None:
        """Open a progress bar for ``total`` iterations (``initial`` already done)."""
        if not self.progress:
            return
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=total, initial=initial, desc=f"epoch {epoch + 1}", dynamic_ncols=True
        )

    def step(self, loss: float, images_per_s: float) -> None:
        """Advance the progress bar by one iteration and show loss and throughput."""
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{images_per_s:.1f}", refresh=False)
            self._bar.update(1)

    def end_epoch(self) -> None:
        """Close the progress bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def print(self, text: str) -> None:
        """Print on rank 0 (through tqdm so that bars stay intact)."""
        if not self.enabled:
            return
        if self._bar is not None:
            from tqdm.auto import tqdm

            tqdm.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        """Flush and close the files."""
        self.end_epoch()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None


def _number(value: Any) -> float | None:
    """A JSON-safe float (None for NaN/Inf, which JSON cannot hold)."""
    value = float(value)
    return value if math.isfinite(value) else None
