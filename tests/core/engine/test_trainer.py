"""The training loop: exact resume, NaN stop, logs, budgets (CPU, the toy detector)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torchvision.io import read_image

from anchorage.core import Spec, read_checkpoint
from anchorage.core.engine import TrainingDiverged, train
from anchorage.core.engine.trainer import Trainer

pytestmark = pytest.mark.slow


def params(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["model"]


def resume_spec(toys, max_iters: int) -> Spec:
    # 4 iterations per epoch; momentum, warm-up, a multistep drop, dropout and shuffling all
    # depend on restored state.
    return Spec.from_dict(
        toys.toy_spec(
            epochs=3,
            max_iters=max_iters,
            warmup_iters=3,
            lr_scheduler={"type": "multistep", "milestones": [1], "gamma": 0.5},
            optimizer={"type": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True},
            eval_interval=0,
            log_images=0,
        )
    )


def test_resume_mid_epoch_equals_straight_run(toys, tmp_path: Path) -> None:
    straight = train(resume_spec(toys, 10), tmp_path / "straight")
    first = train(resume_spec(toys, 6), tmp_path / "split")  # stops mid-epoch 2
    assert first["iteration"] == 6 and first["stopped"] == "max_iters"
    state = read_checkpoint(tmp_path / "split" / "last.pt")
    assert (state["epoch"], state["epoch_iter"]) == (1, 2)
    resumed = train(resume_spec(toys, 10), tmp_path / "split", resume=True)
    assert resumed["iteration"] == straight["iteration"] == 10
    a, b = params(tmp_path / "straight" / "last.pt"), params(tmp_path / "split" / "last.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the resumed run did only the 4 remaining steps (log_interval 2) ...
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    logged = [json.loads(x)["iteration"] for x in lines if '"train"' in x]
    assert logged == [2, 4, 6, 8, 10]
    # ... and the 6-step model differs from the 10-step one
    assert not torch.equal(state["model"]["head.weight"], a["head.weight"])


def test_checkpoint_payload_is_weights_only_loadable(toys, tmp_path: Path) -> None:
    train(resume_spec(toys, 2), tmp_path)
    data = torch.load(tmp_path / "last.pt", weights_only=True)
    expected = {"model", "optimizer", "scheduler", "scaler", "spec", "epoch", "iteration", "rng"}
    assert expected <= set(data)
    assert set(data["rng"]) == {"python", "numpy", "torch", "cuda"}
    assert data["spec"]["train"]["max_iters"] == 2
    assert Spec.from_dict(data["spec"]).section("train").max_iters == 2


def test_nan_loss_stops_and_keeps_last_good_checkpoint(toys, tmp_path: Path) -> None:
    spec = toys.toy_spec(epochs=3, eval_interval=0, log_images=0)
    spec["model"]["nan_after"] = 5  # iteration 6, in epoch 2
    with pytest.raises(TrainingDiverged) as info:
        train(Spec.from_dict(spec), tmp_path)
    message = str(info.value)
    assert "iteration 6" in message and "loss_box=nan" in message and "loss_cls=" in message
    assert str(tmp_path / "last.pt") in message
    kept = read_checkpoint(tmp_path / "last.pt")
    assert kept["iteration"] == 4
    assert all(torch.isfinite(t).all() for t in kept["model"].values())


def test_nan_gradient_with_clipping_stops_before_the_update(toys, tmp_path: Path) -> None:
    spec = toys.toy_spec(grad_clip=1.0)
    spec["model"]["nan_grad"] = True
    with pytest.raises(TrainingDiverged, match="non-finite gradient norm at iteration 1"):
        train(Spec.from_dict(spec), tmp_path)


def test_logs_jsonl_and_tensorboard(toys, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(Spec.from_dict(toys.toy_spec(epochs=1, log_interval=1)), tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_lines = [x for x in lines if x["kind"] == "train"]
    assert [x["iteration"] for x in train_lines] == [1, 2, 3, 4]
    assert {"loss_box", "loss_cls", "loss", "lr", "images_per_s"} <= set(train_lines[0])
    val = [x for x in lines if x["kind"] == "val"]
    assert len(val) == 1 and val[0]["bbox/AP"] == pytest.approx(result["metrics"]["bbox/AP"])
    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss_box", "train/loss_cls", "train/lr", "val/bbox/AP"} <= scalars
    assert events.Tags()["images"] == ["predictions/0"]
    drawn = read_image(str(tmp_path / "predictions" / "0.png"))  # the final eval, as a file
    assert drawn.dtype == torch.uint8 and drawn.shape[0] == 3
    assert tuple(drawn.shape[1:]) == (384, 2 * 384 + 4)  # ground truth | gap | prediction
    assert "COCO bbox" in result["summary"] and "square" in result["summary"]
    assert (tmp_path / "spec.yaml").is_file()
    assert result["train_seconds"] > 0 and result["images_per_s"] > 0


def test_max_minutes_stops_at_a_step_boundary(toys, tmp_path: Path) -> None:
    spec = Spec.from_dict(toys.toy_spec(epochs=50, max_minutes=1e-6, eval_interval=0))
    result = train(spec, tmp_path)
    assert result["stopped"] == "max_minutes" and result["iteration"] == 1
    assert read_checkpoint(tmp_path / "last.pt")["iteration"] == 1


def test_resume_without_checkpoint_is_an_error(toys, tmp_path: Path) -> None:
    from anchorage.core import CheckpointError

    with pytest.raises(CheckpointError, match="no checkpoint to resume"):
        train(resume_spec(toys, 2), tmp_path, resume=True)


def test_signal_request_checkpoints_and_raises(toys, tmp_path: Path) -> None:
    from anchorage.core.engine import TrainingStopped

    trainer = Trainer(resume_spec(toys, 10), tmp_path, progress=False)
    trainer.setup()
    trainer.signals.signum = 15  # as if SIGTERM arrived during the first step
    with pytest.raises(TrainingStopped) as info:
        trainer._train_epochs()
    assert info.value.exit_code == 143
    assert read_checkpoint(tmp_path / "last.pt")["iteration"] == 1
    trainer.logger.close()


def test_grad_clip_bounds_the_update(toys, tmp_path: Path) -> None:
    spec = toys.toy_spec(optimizer={"type": "sgd", "lr": 1.0, "momentum": 0.0}, grad_clip=1e-3)
    spec["model"]["dropout"] = 0.0
    trainer = Trainer(Spec.from_dict(spec), tmp_path, progress=False)
    trainer.setup()
    before = [p.detach().clone() for p in trainer.model.parameters()]
    images, targets = next(iter(trainer.train_loader))
    values, stop = trainer.train_step(images, targets)
    params = [p.detach() for p in trainer.model.parameters()]
    step = torch.cat([(p - b).flatten() for p, b in zip(params, before)])
    assert stop is None and values["grad_norm"] > 1e-3  # clipping was needed ...
    assert float(step.norm()) == pytest.approx(1e-3, rel=1e-4)  # ... and applied
    trainer.logger.close()


def test_eval_interval_and_epoch_checkpoints(toys, tmp_path: Path) -> None:
    spec = toys.toy_spec(epochs=3, eval_interval=2, keep_epoch_checkpoints=True, log_images=0)
    train(Spec.from_dict(spec), tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines if x["kind"] == "val"] == [2, 3]  # every 2nd + final
    assert sorted(p.name for p in tmp_path.glob("epoch_*.pt")) == [
        "epoch_1.pt", "epoch_2.pt", "epoch_3.pt",
    ]  # fmt: skip
    assert read_checkpoint(tmp_path / "epoch_2.pt")["iteration"] == 8
    # a run stopped mid-epoch writes last.pt but no epoch file for the partial epoch
    spec["train"].update(epochs=4, max_iters=14)
    train(Spec.from_dict(spec), tmp_path / "partial")
    assert read_checkpoint(tmp_path / "partial" / "last.pt")["iteration"] == 14
    assert read_checkpoint(tmp_path / "partial" / "epoch_3.pt")["iteration"] == 12
    assert not (tmp_path / "partial" / "epoch_4.pt").exists()


def test_param_group_lrs_are_logged(toys, tmp_path: Path) -> None:
    spec = toys.toy_spec(
        epochs=1, eval_interval=0, log_interval=1,
        param_groups=[{"pattern": "^head", "lr_mult": 10.0}],
    )  # fmt: skip
    train(Spec.from_dict(spec), tmp_path)
    first = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert sorted([first["lr_group0"], first["lr_group1"]]) == pytest.approx([0.05, 0.5])


def test_evaluation_does_not_change_training(toys, tmp_path: Path, monkeypatch) -> None:
    import random

    from anchorage.core.engine import evaluate as evaluation

    real = evaluation.run_evaluation

    def noisy(*args, **kwargs):  # an evaluation that consumes the global RNGs
        torch.rand(3), random.random()
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "run_evaluation", noisy)
    for interval in (0, 1):
        spec = toys.toy_spec(epochs=2, eval_interval=interval, log_images=0)
        train(Spec.from_dict(spec), tmp_path / str(interval))
    a, b = params(tmp_path / "0" / "last.pt"), params(tmp_path / "1" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
