"""Whole training loop vs the bare model step: images/s side by side for one spec.

``measure_loop(spec_path, steps=..., warmup=...)`` builds the spec's trainer twice:

- **model step**: one batch from the training loader, moved to the device once, and
  ``Trainer.train_step`` (forward, loss reduction, backward, clipping, optimizer, scheduler,
  AMP as configured) called ``warmup + steps`` times on it; only the last ``steps`` are timed
  (CUDA-synchronised). No data loading, no logging.
- **whole loop**: ``Trainer.run`` for ``warmup + steps`` iterations (``train.max_iters``) with
  the spec's data loader, logging and counters; evaluation and checkpoints are off (they are
  per-epoch costs, not per-step ones). Timed from the end of step ``warmup`` to the end of the
  last step.

Both use the spec's training batch size (``data.train.batch_size``) and settings; the ratio
``loop / model step`` says how much of the model's speed a real run keeps (target >= 0.85).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from anchorage.core.spec import load_spec

from .timing import synchronize

_LOOP_ONLY = (
    "train.eval_interval=0",
    "train.checkpoint_interval=0",
    "train.log_images=0",
    "train.progress=false",
    "train.epochs=100000",  # train.max_iters ends the run
)


@attrs.frozen(kw_only=True)
class LoopThroughput:
    """Images/s of the bare model step and of the whole loop for one spec and device."""

    spec: str
    device: str
    batch_size: int
    steps: int
    model_step_ips: float
    loop_ips: float

    @property
    def ratio(self) -> float:
        """Whole loop / model step (1.0: the loop costs nothing beyond the step)."""
        return self.loop_ips / max(self.model_step_ips, 1e-12)


def measure_loop(
    spec_path: str | Path,
    *,
    steps: int = 50,
    warmup: int = 5,
    overrides: Sequence[str] = (),
    device: str | None = None,
    work_dir: str | Path | None = None,
) -> LoopThroughput:
    """Measure both numbers for ``spec_path`` (``overrides``: ``--set`` items)."""
    if steps < 1 or warmup < 1:
        raise ValueError(f"steps and warmup must be >= 1, got {steps} and {warmup}")
    items = [*overrides, *_LOOP_ONLY, f"train.max_iters={warmup + steps}"]
    spec = load_spec(spec_path, items)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(work_dir) if work_dir is not None else Path(tmp)
        step_ips, batch, dev = _model_step(spec, root / "model_step", steps, warmup, device)
        loop_ips = _whole_loop(spec, root / "loop", warmup, device)
    return LoopThroughput(
        spec=str(spec_path),
        device=dev,
        batch_size=batch,
        steps=steps,
        model_step_ips=step_ips,
        loop_ips=loop_ips,
    )


def _model_step(
    spec: Any, work_dir: Path, steps: int, warmup: int, device: str | None
) -> tuple[float, int, str]:
    from anchorage.core.engine.batches import move_to
    from anchorage.core.engine.trainer import Trainer

    trainer = Trainer(spec, work_dir, device=device, progress=False)
    try:
        trainer.setup()
        images, targets = next(iter(trainer.train_loader))
        images, targets = move_to(images, targets, trainer.device)
        trainer.model.train()
        for _ in range(warmup):
            trainer.train_step(images, targets)
        synchronize(trainer.device)
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(images, targets)
        synchronize(trainer.device)
        seconds = time.perf_counter() - start
    finally:
        if hasattr(trainer, "logger"):
            trainer.logger.close()
    return steps * len(images) / seconds, len(images), str(trainer.device)


def _whole_loop(spec: Any, work_dir: Path, warmup: int, device: str | None) -> float:
    from anchorage.core.engine.trainer import Trainer

    class StepClock(Trainer):
        """The trainer, stamping the end of every step and skipping the final eval/save."""

        stamps: list[tuple[float, int]]

        def _after_step(self, values: Any, batch: int, tick: float, window: Any) -> float:
            synchronize(self.device)
            self.stamps.append((time.perf_counter(), batch))
            return super()._after_step(values, batch, tick, window)

        def finish(self) -> None:
            pass

    trainer = StepClock(spec, work_dir, device=device, progress=False)
    trainer.stamps = []
    trainer.run()
    (start, _), *rest = trainer.stamps[warmup - 1 :]
    if not rest:
        raise ValueError("whole loop: no step after the warm-up was timed")
    return sum(n for _, n in rest) / (rest[-1][0] - start)


def markdown_rows(results: Sequence[LoopThroughput]) -> str:
    """A Markdown table: one row per spec."""
    lines = [
        "| spec | device | batch | timed steps | model step images/s | whole loop images/s "
        "| loop / step |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.spec} | {r.device} | {r.batch_size} | {r.steps} | {r.model_step_ips:.1f} "
            f"| {r.loop_ips:.1f} | {r.ratio:.2f} |"
        )
    return "\n".join(lines)
