"""The training loop, in named stages: setup → (epoch → step)* → evaluate → checkpoint.

``train(spec, work_dir)`` builds the model, data, optimizer and scheduler from the spec,
trains for ``train.epochs`` (or until ``max_iters`` / ``max_minutes`` / a signal), evaluates
every ``eval_interval`` epochs and at the end, and writes ``last.pt`` in ``work_dir``.
``resume=True`` continues from ``work_dir/last.pt`` exactly where it stopped (mid-epoch
included): model, optimizer, scheduler, AMP scaler, counters, RNG states and the data order
of the interrupted epoch are restored, so N steps + resume + M steps equals N+M steps.

Under torchrun the same code runs on every rank (DDP); rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from ..build import build_model
from ..composition import check_spec
from ..errors import AnchorageError, CheckpointError
from ..spec import Spec
from . import distributed as ddp
from .acceleration import prepare_model, resolve_amp
from .batches import epoch_batches, move_to
from .config import TrainConfig
from .device import select_device
from .extras import TrainingExtras
from .health import (
    confirmed_nonfinite,
    loss_diverged,
    nonfinite_flag,
    state_diverged,
)
from .logging import LossWindow, RunLogger
from .optim import build_optimizer, build_scheduler
from .resume import apply_resume_changes
from .signals import StopSignals, TrainingStopped
from .state import (
    Counters,
    capture_rng,
    load_training_state,
    make_payload,
    restore_rng,
    seed_everything,
    unwrap,
    write_checkpoint,
)
from .workdir import WorkDirLock, disk_error, prepare_work_dir

LAST = "last.pt"


class Trainer:
    """One training run of ``spec`` in ``work_dir`` (see the module docstring)."""

    def __init__(
        self,
        spec: Spec,
        work_dir: str | Path,
        *,
        resume: bool | str | Path = False,
        device: str | None = None,
        progress: bool | None = None,
        overwrite: bool = False,
    ) -> None:
        self.spec = spec
        self.cfg: TrainConfig = spec.section("train")
        self.work_dir = Path(work_dir)
        self.resume = resume
        self.overwrite = overwrite
        self._lock: WorkDirLock | None = None
        self.requested_device = device or self.cfg.device
        self.show_progress = self.cfg.progress if progress is None else progress
        self.counters = Counters()
        self.metrics: dict[str, float] = {}
        self.summaries: list[str] = []
        self.last_checkpoint: Path | None = None
        self.signals = StopSignals()  # entered by run(); never requests a stop before
        self._started = time.monotonic()
        self._owns_group = False
        self._val_loader: Any = None
        self._train_seconds = 0.0  # time inside the training loops (data loading included)
        self._images = 0  # images trained on by all ranks, this process's run

    # ------------------------------------------------------------------ setup stage
    def setup(self) -> None:
        """Device, process group, seeds, model, data, optimizer, scheduler, scaler, logger."""
        device = select_device(self.requested_device)
        self._owns_group = ddp.env_requests_distributed() and not ddp.current().enabled
        self.dist = ddp.init_distributed(device.type)
        if device.type == "cuda" and self.dist.enabled:
            device = torch.device("cuda", self.dist.local_rank)
        self.device = device
        seed_everything(self.cfg.seed + self.dist.rank, self.cfg.deterministic)
        # The one build of the model, with the composition checks: a spec error surfaces
        # before the work dir is touched (--overwrite deletes a previous run's outputs).
        model = (check_spec(self.spec, build_datasets=True) or build_model(self.spec)).to(device)
        if self.dist.is_main:
            self._lock = prepare_work_dir(
                self.work_dir, resume=bool(self.resume), overwrite=self.overwrite
            )
        self.extras = TrainingExtras(self.cfg)
        loaded = self.extras.load_from(model, resuming=bool(self.resume))
        if self.cfg.sync_batchnorm:
            model = ddp.convert_sync_batchnorm(model, self.dist, device)
        prepare_model(model, channels_last=self.cfg.channels_last, compile=self.cfg.compile)
        self._build_data()
        self.optimizer = build_optimizer(model, self.cfg)  # freezes before DDP wrapping
        self.extras.setup_ema(model)
        self.model = ddp.wrap_model(
            model, self.dist, device, find_unused=self.cfg.find_unused_parameters
        )
        self.scheduler = build_scheduler(
            self.optimizer,
            self.cfg,
            self.extras.optimizer_steps(self.steps_per_epoch),
            self.extras.optimizer_steps(self.total_steps, self.steps_per_epoch),
        )
        self._setup_precision()
        self.logger = RunLogger(
            self.work_dir,
            enabled=self.dist.is_main,
            progress=self.show_progress,
            append=bool(self.resume),
        )
        if loaded:
            self.logger.print(loaded)
        if self.resume:
            self._restore()
        elif self.dist.is_main:
            self._write_spec()

    def _build_data(self) -> None:
        from ..data import build_dataloader

        self.train_loader = build_dataloader(
            self.spec, "train", distributed=self.dist.enabled, seed=self.cfg.seed
        )
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise AnchorageError("data.train: the training split yields no batch")
        total = self.cfg.epochs * self.steps_per_epoch
        self.total_steps = min(total, self.cfg.max_iters or total)

    def _setup_precision(self) -> None:
        self.amp_dtype, note = resolve_amp(self.cfg.amp, self.device)
        if note and self.dist.is_main:
            print(f"note: {note}")
        enabled = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=enabled)

    def _write_spec(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(self.spec.to_dict(), sort_keys=False)
        (self.work_dir / "spec.yaml").write_text(text, encoding="utf-8")

    def _restore(self) -> None:
        path = self.work_dir / LAST if self.resume is True else Path(self.resume)
        if not path.is_file():
            raise CheckpointError(f"{path}: no checkpoint to resume from")
        try:
            data = load_training_state(
                path,
                model=self.model,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                scaler=self.scaler,
                rank=self.dist.rank,
                world_size=self.dist.world_size,
            )
        except CheckpointError:
            self.extras.explain_mismatch(path, self.spec.to_dict())
            raise
        self.extras.load_state(data, self.optimizer)
        self.counters = Counters(data["epoch"], data["iteration"], data.get("epoch_iter", 0))
        saved = data.get("spec") or {}
        note = apply_resume_changes(
            saved, self.spec.to_dict(), self.optimizer, self.scheduler, f"--resume from {path}"
        )
        if note:
            self.logger.print(note)
        self.metrics = dict(data.get("metrics") or {})
        self.last_checkpoint = path
        c = self.counters
        where = (
            f"in epoch {c.epoch + 1} ({c.epoch_iter} of {self.steps_per_epoch} steps done)"
            if c.epoch_iter
            else f"after epoch {c.epoch}"
        )
        self.logger.print(f"resumed from {path} {where}, iteration {c.iteration}")

    # ------------------------------------------------------------------ run
    def run(self) -> dict[str, Any]:
        """Train, evaluate and checkpoint; returns metrics, counters and the checkpoint."""
        try:
            self.setup()
            with StopSignals() as signals:
                self.signals = signals
                self._started = time.monotonic()
                reason = self._train_epochs()
            self.finish()
            return {
                "metrics": self.metrics,
                "epoch": self.counters.epoch,
                "iteration": self.counters.iteration,
                "checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None,
                "stopped": reason,
                "summary": "\n".join(self.summaries),
                "train_seconds": self._train_seconds,
                "images_per_s": self._images / max(self._train_seconds, 1e-9),
            }
        except OSError as exc:
            error = disk_error(exc, self.work_dir)
            if error is None:
                raise
            raise error from None
        finally:
            if hasattr(self, "logger"):
                self.logger.close()
            if self._lock is not None:
                self._lock.release()
            if self._owns_group and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()

    def _train_epochs(self) -> str | None:
        """Epoch loop; returns why it ended early (``max_iters``, ``max_minutes``) or None."""
        c = self.counters
        while c.epoch < self.cfg.epochs and c.iteration < self.total_steps:
            reason = self.train_epoch()
            if reason == "signal":
                path = self.checkpoint()
                ddp.barrier()
                raise TrainingStopped(self.signals.signum or 15, str(path) if path else None)
            if reason is not None:
                return reason
            if _due(c.epoch, self.cfg.eval_interval) and c.epoch < self.cfg.epochs:
                self.evaluate()
                if self.extras.should_stop():
                    self.logger.print(self.extras.stop_message())
                    return "early_stopping"
            if _due(c.epoch, self.cfg.checkpoint_interval) and c.epoch < self.cfg.epochs:
                self.checkpoint(epoch_file=self.cfg.keep_epoch_checkpoints)
        return None

    def finish(self) -> None:
        """Final stage: evaluate (print the tables) and write the last checkpoint."""
        self.evaluate(final=True)
        whole_epoch = self.counters.epoch_iter == 0
        self.checkpoint(epoch_file=self.cfg.keep_epoch_checkpoints and whole_epoch)

    # ------------------------------------------------------------------ epoch and step
    def train_epoch(self) -> str | None:
        """One pass over the training data (the rest of it, after a mid-epoch resume)."""
        c = self.counters
        batches = epoch_batches(
            self.train_loader, c.epoch, self.cfg.seed + self.dist.rank, skip=c.epoch_iter
        )
        self.model.train()
        self.logger.start_epoch(c.epoch, self.steps_per_epoch, c.epoch_iter)
        window = LossWindow()
        tick = start = time.perf_counter()
        try:
            for images, targets in batches:
                values, stop = self.train_step(images, targets)
                tick = self._after_step(values, len(images), tick, window)
                limit = self.cfg.max_iters
                reason = stop or ("max_iters" if limit and c.iteration >= limit else None)
                if reason is not None:
                    break
            else:
                reason = None
        finally:
            self.logger.end_epoch()
            self._train_seconds += time.perf_counter() - start
        self._log_train(window)
        if c.epoch_iter >= self.steps_per_epoch:  # a whole epoch is done
            c.epoch += 1
            c.epoch_iter = 0
        return reason

    def _after_step(
        self, values: dict[str, float], batch: int, tick: float, window: LossWindow
    ) -> float:
        """Count the step, update the progress bar, log every ``log_interval``; new tick."""
        c = self.counters
        c.iteration += 1
        c.epoch_iter += 1
        now = time.perf_counter()
        images = batch * self.dist.world_size
        self._images += images
        ips = images / max(now - tick, 1e-9)
        self.logger.step(values["loss"], ips)
        window.add({**values, "images_per_s": ips})
        if c.iteration % self.cfg.log_interval == 0:
            self._log_train(window)
        return now

    def train_step(self, images: list, targets: list) -> tuple[dict[str, float], str | None]:
        """forward → check losses (all ranks) → backward → clip → optimizer/scheduler step.

        Returns the rank-averaged loss terms (+ ``loss``, ``lr``, maybe ``grad_norm``) and a
        stop reason agreed by all ranks (``signal`` / ``max_minutes``) or None.
        """
        images, targets = move_to(images, targets, self.device)
        with torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=bool(self.amp_dtype)
        ):
            losses = self.model(images, targets)
        loss = sum(losses.values())
        values, stop = self._reduce(losses, loss)
        first, size, last = self.extras.window(self.counters.epoch_iter, self.steps_per_epoch)
        if first:
            self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss / size if size > 1 else loss).backward()
        groups = self.optimizer.param_groups  # the lr of the (next) optimizer step
        values["lr"] = groups[0]["lr"]
        if len(groups) > 1:
            values.update({f"lr_group{i}": g["lr"] for i, g in enumerate(groups)})
        if last:
            self._optimizer_step(values)
        return values, stop

    def _optimizer_step(self, values: dict[str, float]) -> None:
        """Clip (``grad_norm`` into ``values``) → optimizer/scaler step → scheduler step →
        EMA update; once per accumulation window."""
        if self.cfg.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
            values["grad_norm"] = float(norm)
            if not (math.isfinite(values["grad_norm"]) or self.scaler.is_enabled()):
                self._diverged(values, "gradient norm")  # fp16's scaler skips such steps
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.extras.update_ema(unwrap(self.model))

    def _reduce(
        self, losses: dict[str, torch.Tensor], loss: torch.Tensor
    ) -> tuple[dict[str, float], str | None]:
        """Average loss terms over ranks with the stop flags in the same all-reduce.

        A non-finite loss on any rank raises TrainingDiverged on every rank, before the
        step touches the weights.
        """
        names = sorted(losses)
        local_flags = [float(self.signals.requested), float(self._out_of_time())]
        vec = torch.stack([losses[k].detach().float() for k in names] + [loss.detach().float()])
        state = nonfinite_flag(unwrap(self.model), vec.device)  # weights and buffers as used
        vec = torch.cat([vec, torch.tensor(local_flags, device=vec.device), state[None]])
        if self.dist.enabled:
            torch.distributed.all_reduce(vec)
        out = vec.tolist()
        n = len(names) + 1
        values = {k: v / self.dist.world_size for k, v in zip([*names, "loss"], out[:n])}
        if out[n + 2] > 0:
            self._state_diverged()
        if not all(math.isfinite(v) for v in values.values()):
            self._diverged(values)
        signal, timeout = out[n] > 0, out[n + 1] > 0
        return values, "signal" if signal else ("max_minutes" if timeout else None)

    def _out_of_time(self) -> bool:
        limit = self.cfg.max_minutes
        return limit is not None and time.monotonic() - self._started > limit * 60

    def _diverged(self, values: dict[str, float], what: str = "loss") -> None:
        c = self.counters
        raise loss_diverged(values, what, c.iteration + 1, c.epoch + 1, self.last_checkpoint)

    def _check_state(self) -> None:
        """TrainingDiverged on every rank when any rank's parameters or buffers are NaN/Inf."""
        flag = nonfinite_flag(unwrap(self.model), self.device)
        if self.dist.enabled:
            torch.distributed.all_reduce(flag)
        if bool(flag > 0):
            self._state_diverged()

    def _state_diverged(self) -> None:
        """Confirm the cheap flag exactly (on every rank together), then stop the run."""
        model = unwrap(self.model)
        if confirmed_nonfinite(model, self.device, self.dist.enabled):
            raise state_diverged(model, self.counters.iteration, self.last_checkpoint)

    def _log_train(self, window: LossWindow) -> None:
        means = window.flush()
        if means:
            self.logger.record("train", self.counters.epoch_number, self.counters.iteration, means)

    # ------------------------------------------------------------------ evaluate, checkpoint
    def evaluate(self, *, final: bool = False) -> dict[str, float]:
        """Evaluate on ``eval.split`` (all ranks); log metrics and a few drawn predictions.

        RNG states are put back afterwards, so evaluating (or not) never changes training.
        """
        from .evaluate import eval_split

        split = eval_split(self.spec)
        if split is None:
            return self.metrics
        rng = capture_rng()
        try:
            self._evaluate_split(split, final)
        finally:
            restore_rng(rng)
            self.model.train()
        return self.metrics

    def _evaluate_split(self, split: str, final: bool) -> None:
        from .evaluate import log_prediction_images, run_evaluation

        model = self.extras.eval_model(unwrap(self.model))
        result = run_evaluation(
            self.spec,
            model,
            split,
            self.device,
            distributed=self.dist.enabled,
            progress=self.show_progress and self.dist.is_main,
            loader=self._val_loader,
            pictures=self.work_dir / "pictures" if final else None,
        )
        self._val_loader = result.loader
        self.metrics = result.metrics
        c = self.counters
        epoch = self.counters.epoch_number
        self.logger.record(split, epoch, c.iteration, self.metrics)
        if self.cfg.log_images and self.dist.is_main:
            log_prediction_images(
                self.logger, model, result, self.cfg.log_images, c.iteration, save=final
            )
        shown = ", ".join(f"{k}={v:.4f}" for k, v in list(self.metrics.items())[:4])
        self.logger.print(f"[{split}] epoch {epoch} iteration {c.iteration}: {shown}")
        if final:
            self.summaries = result.summaries
            for picture in result.pictures:
                self.logger.print(f"wrote {picture}")
        if self.extras.observe(self.metrics, c.iteration) and self.dist.is_main:
            best = self.work_dir / "best.pt"
            write_checkpoint(best, self._payload(model_state=model.state_dict()))
            self.logger.print(f"new best {self.extras.best_text()}: {best}")

    def checkpoint(self, *, epoch_file: bool = False) -> Path | None:
        """Write ``last.pt`` (and ``epoch_N.pt``) on rank 0; returns the path."""
        path = self.work_dir / LAST
        self._check_state()  # never replace a good checkpoint with a blown-up model
        rng_ranks = ddp.gather_objects(capture_rng()) if self.dist.enabled else None
        if self.dist.is_main:
            payload = self._payload(rng_ranks=rng_ranks)
            write_checkpoint(path, payload)
            if epoch_file:
                write_checkpoint(self.work_dir / f"epoch_{self.counters.epoch}.pt", payload)
        ddp.barrier()
        self.last_checkpoint = path
        return path

    def _payload(self, *, rng_ranks: Any = None, model_state: Any = None) -> dict[str, Any]:
        """The checkpoint dict now (``model_state`` replaces the model's weights: best.pt
        holds the weights that were evaluated, the EMA ones when ``train.ema`` is set)."""
        payload = make_payload(
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler,
            spec=self.spec.to_dict(),
            epoch=self.counters.epoch,
            iteration=self.counters.iteration,
            epoch_iter=self.counters.epoch_iter,
            metrics=self.metrics,
            rng_ranks=rng_ranks,
        )
        if model_state is not None:
            payload["model"] = model_state
        return {**payload, **self.extras.state(self.optimizer, self.counters.epoch_iter)}


def _due(epoch: int, interval: int) -> bool:
    return interval > 0 and epoch % interval == 0


def train(
    spec: Spec,
    work_dir: str | Path,
    *,
    resume: bool | str | Path = False,
    device: str | None = None,
    progress: bool | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train ``spec`` in ``work_dir``; see ``Trainer``. Returns ``{"metrics", "epoch",
    "iteration", "checkpoint", "stopped", "summary"}``.

    A work dir holding a previous run needs ``resume`` (continue it) or ``overwrite`` (delete
    its outputs first); see ``workdir.prepare_work_dir``. Raises TrainingStopped on
    SIGINT/SIGTERM (after checkpointing), TrainingDiverged on a NaN/Inf loss or model state,
    WorkDirError on an unusable work dir.
    """
    trainer = Trainer(
        spec, work_dir, resume=resume, device=device, progress=progress, overwrite=overwrite
    )
    return trainer.run()
