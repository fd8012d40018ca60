"""Checkpoint state: RNG states survive a weights-only round trip; configs validate."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from anchorage.core import Spec, SpecError, read_checkpoint, save_checkpoint
from anchorage.core.engine.state import capture_rng, restore_rng


def draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1)), np.random.randn()


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    np.random.randn()  # leaves a cached gaussian in numpy's state
    save_checkpoint(tmp_path / "rng.pt", {"rng": capture_rng()})
    expected = draws()
    restore_rng(read_checkpoint(tmp_path / "rng.pt")["rng"])
    assert draws() == expected


@pytest.mark.parametrize(
    ("train", "match"),
    [
        ({"amp": "fp8"}, r"train\.amp"),
        ({"param_groups": [{"pattern": "(", "lr_mult": 2}]}, r"param_groups\[0\]\.pattern"),
        ({"param_groups": [{"pattern": "x", "lr_mult": -1}]}, r"param_groups\[0\]\.lr_mult"),
        ({"grad_clip": 0}, r"train\.grad_clip"),
        ({"epochs": 0}, r"train\.epochs"),
        ({"optimizer": {"type": "sgdd"}}, "did you mean 'sgd'"),
        ({"lr_scheduler": {"type": "multistep", "milestones": []}}, "milestones"),
        ({"warmup_iter": 3}, "unknown parameter 'warmup_iter'"),
    ],
)
def test_train_section_errors_name_the_key(train: dict, match: str) -> None:
    data = {"optimizer": {"type": "sgd"}, **train}
    with pytest.raises(SpecError, match=match):
        Spec.from_dict({"train": data})


def test_train_section_needs_an_optimizer() -> None:
    with pytest.raises(SpecError, match="missing required parameter 'optimizer'"):
        Spec.from_dict({"train": {"epochs": 1}})
