"""Registered lr schedulers: epoch periods become iterations; curves match torch's."""

from __future__ import annotations

import pytest
import torch
from torch.optim import lr_scheduler as tls

from anchorage.core import build_component
from anchorage.core.registry import LR_SCHEDULERS


def curve(sched_factory, steps: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = sched_factory(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def ours(data: dict, spe: int = 5, total: int = 40):
    return lambda opt: build_component(
        "lr_scheduler", data, optimizer=opt, steps_per_epoch=spe, total_steps=total
    )


@pytest.mark.parametrize(
    ("data", "reference"),
    [
        ({"type": "step", "step_size": 2, "gamma": 0.5}, lambda o: tls.StepLR(o, 10, 0.5)),
        ({"type": "multistep", "milestones": [3, 1]}, lambda o: tls.MultiStepLR(o, [5, 15])),
        ({"type": "cosine", "eta_min": 0.01}, lambda o: tls.CosineAnnealingLR(o, 40, 0.01)),
        ({"type": "linear", "end_factor": 0.1}, lambda o: tls.LinearLR(o, 1.0, 0.1, 40)),
        ({"type": "constant"}, lambda o: tls.ConstantLR(o, 1.0, 0)),
    ],
)
def test_matches_torch_scheduler(data: dict, reference) -> None:
    got = curve(ours(data), 40)
    assert got == pytest.approx(curve(reference, 40))


def test_every_required_scheduler_is_registered() -> None:
    assert {"step", "multistep", "cosine", "linear", "constant"} <= set(LR_SCHEDULERS.names())


def test_cosine_reaches_eta_min_at_the_end_of_the_run() -> None:
    got = curve(ours({"type": "cosine", "eta_min": 0.0}, total=10), 11)
    assert got[0] == pytest.approx(0.1) and got[10] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(got, got[1:]))


def test_state_survives_a_round_trip() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = ours({"type": "multistep", "milestones": [1, 2]})(opt)
    for _ in range(7):
        opt.step()
        sched.step()
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched2 = ours({"type": "multistep", "milestones": [1, 2]})(opt2)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    for _ in range(5):
        for o, s in ((opt, sched), (opt2, sched2)):
            o.step()
            s.step()
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
