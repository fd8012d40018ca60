"""Resuming with a changed spec: the lr and the loop's length apply, the rest is refused.

Reliability battery case 10 (see ``benchmarks/results/reliability_battery.md``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anchorage.core import Spec
from anchorage.core.engine import train
from anchorage.core.errors import SpecError

pytestmark = pytest.mark.slow


def spec(toys, max_iters: int, lr: float = 0.05, **extra) -> Spec:
    return Spec.from_dict(
        toys.toy_spec(
            epochs=3,
            max_iters=max_iters,
            warmup_iters=3,
            lr_scheduler={"type": "multistep", "milestones": [1], "gamma": 0.5},
            optimizer={"type": "sgd", "lr": lr, "momentum": 0.9},
            eval_interval=0,
            log_images=0,
            log_interval=1,
            **extra,
        )
    )


def logged_lrs(work: Path) -> dict[int, float]:
    lines = (work / "metrics.jsonl").read_text().splitlines()
    return {r["iteration"]: r["lr"] for r in map(json.loads, lines) if r["kind"] == "train"}


def test_a_new_lr_applies_on_resume_and_keeps_the_schedule(toys, tmp_path: Path) -> None:
    # before: "note: the spec differs" and the checkpoint's lr went on silently
    train(spec(toys, 10), tmp_path / "straight")
    train(spec(toys, 5), tmp_path / "split")  # 3 warm-up steps, stops in epoch 2
    train(spec(toys, 10, lr=0.1), tmp_path / "split", resume=True)
    straight, split = logged_lrs(tmp_path / "straight"), logged_lrs(tmp_path / "split")
    assert [split[i] for i in range(1, 6)] == pytest.approx([straight[i] for i in range(1, 6)])
    assert len({straight[i] for i in range(6, 11)}) == 2  # a multistep drop happens in there
    for it in range(6, 11):  # the schedule goes on, at twice the lr
        assert split[it] == pytest.approx(2 * straight[it]), it


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("optimizer", {"type": "sgd", "lr": 0.05, "momentum": 0.5}, "train.optimizer.momentum"),
        ("seed", 3, "train.seed (unset -> 3)"),
        ("warmup_iters", 5, "train.warmup_iters (3 -> 5)"),
    ],
)
def test_changes_that_cannot_apply_are_refused(toys, tmp_path, key, value, shown) -> None:
    train(spec(toys, 2), tmp_path)
    data = spec(toys, 10).to_dict()
    data["train"][key] = value
    with pytest.raises(SpecError) as info:
        train(Spec.from_dict(data), tmp_path, resume=True)
    message = str(info.value)
    assert "cannot change on resume: " + shown in message and "\n" not in message
    assert "train.optimizer.lr" in message and "--overwrite" in message


def test_model_and_batch_size_changes_are_refused(toys, tmp_path: Path) -> None:
    train(spec(toys, 2), tmp_path)
    data = spec(toys, 10).to_dict()
    data["model"]["dropout"] = 0.0
    data["data"]["train"]["batch_size"] = 4
    with pytest.raises(SpecError, match=r"data.train.batch_size \(2 -> 4\), model.dropout"):
        train(Spec.from_dict(data), tmp_path, resume=True)


def test_length_and_interval_changes_apply(toys, tmp_path: Path, capsys) -> None:
    train(spec(toys, 2), tmp_path)
    result = train(spec(toys, 6, grad_clip=5.0), tmp_path, resume=True)
    assert result["iteration"] == 6
    out = capsys.readouterr().out
    assert "['train.grad_clip', 'train.max_iters'] (applied)" in out
