"""Training conveniences: fine-tuning (load_from), best.pt, EMA, gradient accumulation, early
stopping, bf16 autocast on CPU; exact resume with each; checkpoint errors from stored specs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from anchorage.core import CheckpointError, Spec, SpecError, build_model, read_checkpoint
from anchorage.core.engine import train
from anchorage.core.engine.finetune import check_spec_matches
from anchorage.core.engine.state import write_checkpoint
from anchorage.core.engine.trainer import Trainer

pytestmark = pytest.mark.slow


def spec_of(toys, max_iters: int | None = None, **train_cfg) -> Spec:
    # 4 batches per epoch; momentum, warm-up, a multistep drop, dropout and shuffling all
    # depend on restored state (as in test_trainer's resume test)
    base = dict(
        epochs=3,
        max_iters=max_iters,
        warmup_iters=3,
        lr_scheduler={"type": "multistep", "milestones": [1], "gamma": 0.5},
        optimizer={"type": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True},
        eval_interval=0,
        log_images=0,
    )
    return Spec.from_dict(toys.toy_spec(**{**base, **train_cfg}))


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key


def test_resume_with_ema_and_accumulation_mid_window(toys, tmp_path: Path) -> None:
    # warm-up 2: the 6-step run has 3 optimizer steps, and build_scheduler clips the warm-up
    # to total - 1 steps, which would make the two runs' schedules differ
    extra = {"ema": {"decay": 0.9}, "accumulate_steps": 3, "warmup_iters": 2}
    straight = train(spec_of(toys, 10, **extra), tmp_path / "straight")
    first = train(spec_of(toys, 6, **extra), tmp_path / "split")
    state = read_checkpoint(tmp_path / "split" / "last.pt")
    # epoch 2, 2 batches in: inside the window of batches 1-3 of the epoch
    assert (state["epoch"], state["epoch_iter"]) == (1, 2) and first["stopped"] == "max_iters"
    assert len(state["accumulated_grads"]) == 4 and "ema" in state
    train(spec_of(toys, 10, **extra), tmp_path / "split", resume=True)
    a = read_checkpoint(tmp_path / "straight" / "last.pt")
    b = read_checkpoint(tmp_path / "split" / "last.pt")
    assert_same_tensors(a["model"], b["model"])
    assert_same_tensors(a["ema"], b["ema"])
    assert not torch.equal(a["ema"]["module.head.weight"], a["model"]["head.weight"])
    # the evaluation used the EMA weights
    assert straight["metrics"] == train(spec_of(toys, 10, **extra), tmp_path / "again")["metrics"]


def test_accumulation_equals_a_larger_batch(toys, tmp_path: Path) -> None:
    def run(batch: int, acc: int, name: str) -> dict:
        data = toys.toy_spec(
            epochs=1, eval_interval=0, log_images=0, accumulate_steps=acc,
            optimizer={"type": "sgd", "lr": 0.1, "momentum": 0.9},
        )  # fmt: skip
        data["model"]["dropout"] = 0.0
        data["data"]["train"]["batch_size"] = batch
        result = train(Spec.from_dict(data), tmp_path / name)
        return result, read_checkpoint(tmp_path / name / "last.pt")

    small, acc_state = run(2, 2, "acc")
    big, ref_state = run(4, 1, "ref")
    assert (small["iteration"], big["iteration"]) == (4, 2)  # batches; both took 2 steps
    assert acc_state["scheduler"]["last_epoch"] == ref_state["scheduler"]["last_epoch"] == 2
    for key, value in ref_state["model"].items():
        torch.testing.assert_close(acc_state["model"][key], value, rtol=1e-5, atol=1e-6)


def test_best_checkpoint_and_resume_at_an_epoch_boundary(toys, tmp_path: Path) -> None:
    extra = {"eval_interval": 1, "best_metric": "bbox/AP", "early_stopping": {
        "metric": "bbox/AP", "patience": 5}}  # fmt: skip
    train(spec_of(toys, 12, **extra), tmp_path / "straight")
    train(spec_of(toys, 8, **extra), tmp_path / "split")
    train(spec_of(toys, 12, **extra), tmp_path / "split", resume=True)
    a = read_checkpoint(tmp_path / "straight" / "last.pt")
    b = read_checkpoint(tmp_path / "split" / "last.pt")
    assert a["watch"] == b["watch"]
    rows = [
        json.loads(x) for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    ]
    aps = [r["bbox/AP"] for r in rows if r["kind"] == "val"]
    assert a["watch"]["best"]["best"] == pytest.approx(max(aps))
    best = read_checkpoint(tmp_path / "straight" / "best.pt")
    assert best["metrics"]["bbox/AP"] == pytest.approx(max(aps))
    assert best["iteration"] == a["watch"]["best"]["best_iteration"]


def test_unknown_best_metric_names_the_metrics(toys, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"train.best_metric: 'bbox/APX'.*bbox/AP50"):
        train(spec_of(toys, 4, eval_interval=1, best_metric="bbox/APX"), tmp_path)


def test_early_stopping_ends_the_run(toys, tmp_path: Path, capsys) -> None:
    # AP cannot improve by more than 1.0: the second evaluation exhausts a patience of 1
    stop = {"metric": "bbox/AP", "patience": 1, "min_delta": 1.0}
    result = train(spec_of(toys, None, epochs=5, eval_interval=1, early_stopping=stop), tmp_path)
    assert result["stopped"] == "early_stopping" and result["epoch"] == 2
    assert "early stopping: bbox/AP did not improve for 1 evaluations" in capsys.readouterr().out


def test_bf16_autocast_on_cpu(toys, tmp_path: Path) -> None:
    trainer = Trainer(spec_of(toys, 2, amp="bf16", device="cpu"), tmp_path, progress=False)
    trainer.setup()
    seen = []
    trainer.model.backbone.register_forward_pre_hook(
        lambda *_: seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu"))
    )
    images, targets = next(iter(trainer.train_loader))
    values, _ = trainer.train_step(images, targets)
    assert seen == [torch.bfloat16] and trainer.amp_dtype == torch.bfloat16
    assert torch.isfinite(torch.tensor(values["loss"]))
    trainer.logger.close()


def test_load_from_fits_what_fits_and_starts_fresh(toys, tmp_path: Path, capsys) -> None:
    # pretrained on a 3-class task elsewhere: head 4 + 3 + 1 outputs instead of 4 + 2 + 1
    other = toys.toy_spec()
    other["model"]["num_classes"] = 3
    ckpt = write_checkpoint(
        tmp_path / "pre.pt", {"model": build_model(Spec.from_dict(other)).state_dict()}
    )
    data = toys.toy_spec(epochs=1, eval_interval=0, log_images=0, load_from=str(ckpt))
    trainer = Trainer(Spec.from_dict(data), tmp_path / "fine", progress=False)
    trainer.setup()
    out = capsys.readouterr().out
    assert f"load_from {ckpt}: loaded 2 of 4 model tensors" in out
    assert (
        "skipped 2 tensors: head.{weight,bias} (2 tensors, e.g. head.weight: checkpoint 8x8 vs "
        "model 7x8)" in out
    )
    pre = read_checkpoint(ckpt)["model"]
    own = trainer.model.state_dict()
    assert torch.equal(own["backbone.weight"], pre["backbone.weight"])
    assert (trainer.counters.epoch, trainer.counters.iteration) == (0, 0)
    assert not trainer.optimizer.state  # a new optimizer
    trainer.logger.close()


def test_load_from_a_checkpoint_that_fits_nothing(toys, tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(2)}, path)
    data = toys.toy_spec(epochs=1, load_from=str(path))
    with pytest.raises(CheckpointError, match="no tensor of the checkpoint fits the model"):
        train(Spec.from_dict(data), tmp_path / "run")


def test_checkpoint_of_another_model_is_named_in_one_sentence() -> None:
    theirs = {"spec": {"model": {"type": "two_stage", "num_classes": 3,
                                 "backbone": {"type": "mobilenet_v3_large"}}}}  # fmt: skip
    ours = {
        "model": {"type": "single_shot", "num_classes": 3, "backbone": {"type": "tiny_ssd_base"}}
    }
    with pytest.raises(CheckpointError) as info:
        check_spec_matches(theirs, ours, "x.pt")
    assert str(info.value) == (
        "x.pt: checkpoint is two_stage / mobilenet_v3_large (3 classes), "
        "spec is single_shot / tiny_ssd_base (3 classes)"
    )
    check_spec_matches({"model": {}}, ours, "bare.pt")  # no stored spec: nothing to say


def test_eval_and_resume_name_a_num_classes_mismatch(toys, tmp_path: Path) -> None:
    from anchorage.core.engine import evaluate_checkpoint

    train(spec_of(toys, 2), tmp_path)
    data = spec_of(toys, 4).to_dict()
    data["model"]["num_classes"] = 5
    other = Spec.from_dict(data)
    expected = (
        r"checkpoint is engine_toy_detector \(2 classes\), spec is engine_toy_detector "
        r"\(5 classes\): num_classes 2 in the checkpoint vs 5 in the spec"
    )
    with pytest.raises(CheckpointError, match=expected):
        evaluate_checkpoint(other, tmp_path / "last.pt", progress=False)
    # resuming checks the spec against its data first, before the checkpoint is read
    with pytest.raises(SpecError, match=r"model.num_classes: 5, but data.train.dataset"):
        train(other, tmp_path, resume=True)


def test_epoch_numbers_agree_between_train_and_val_rows(toys, tmp_path: Path, capsys) -> None:
    train(spec_of(toys, 6, eval_interval=1, log_interval=4), tmp_path)
    capsys.readouterr()
    train(spec_of(toys, 12, eval_interval=1, log_interval=4), tmp_path, resume=True)
    out = capsys.readouterr().out
    assert "in epoch 2 (2 of 4 steps done), iteration 6" in out
    assert "[val] epoch 2 iteration 8" in out and "[val] epoch 3 iteration 12" in out
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    by_iteration = {(r["kind"], r["iteration"]): r["epoch"] for r in rows}
    assert by_iteration[("train", 4)] == by_iteration[("val", 4)] == 1
    assert by_iteration[("train", 8)] == by_iteration[("val", 8)] == 2
    assert by_iteration[("val", 6)] == 2  # the final evaluation of the first, stopped run


def test_metric_watch_modes_and_patience() -> None:
    from anchorage.core.engine.tracking import MetricWatch

    up = MetricWatch("m", "max", min_delta=0.01)
    seen = [up.observe({"m": v}, i) for i, v in enumerate([0.1, 0.3, 0.305, float("nan"), 0.2])]
    assert seen == [True, True, False, False, False]
    assert (up.best, up.best_iteration, up.stale) == (0.3, 1, 3)
    down = MetricWatch("loss", "min")
    assert [down.observe({"loss": v}, 0) for v in (2.0, 1.0, 1.5)] == [True, True, False]
    copy = MetricWatch("m", "max")
    copy.load_state_dict(up.state_dict())
    assert copy.state_dict() == up.state_dict()
