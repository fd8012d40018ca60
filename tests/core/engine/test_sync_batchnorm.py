"""train.sync_batchnorm: what N processes x batch B promise against one process x N*B.

Reliability battery case 11 (see ``benchmarks/results/reliability_battery.md`` and the
README's DDP notes). The equality itself, for a model without per-process batch statistics,
is ``test_distributed.py::test_two_gloo_ranks_equal_one_process``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from anchorage.core import Spec
from anchorage.core.engine.distributed import DistInfo, convert_sync_batchnorm
from anchorage.core.errors import AnchorageError

ROOT = Path(__file__).resolve().parents[3]
LAUNCHER = Path(__file__).with_name("launch_tool.py")


def net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm1d(2)))


def test_batchnorm_becomes_sync_batchnorm_under_ddp_on_cuda() -> None:
    model = convert_sync_batchnorm(net(), DistInfo(world_size=2), torch.device("cuda", 0))
    kinds = [type(m) for m in model.modules()]
    assert kinds.count(nn.SyncBatchNorm) == 2 and nn.BatchNorm2d not in kinds
    state = net().state_dict()
    assert model.state_dict().keys() == state.keys()  # checkpoints stay interchangeable


def test_one_process_keeps_plain_batchnorm() -> None:
    model = net()
    assert convert_sync_batchnorm(model, DistInfo(), torch.device("cpu")) is model


def test_cpu_ddp_with_sync_batchnorm_is_refused_before_training() -> None:
    with pytest.raises(AnchorageError, match="SyncBatchNorm runs on CUDA only; this job runs 2"):
        convert_sync_batchnorm(net(), DistInfo(world_size=2), torch.device("cpu"))


def test_the_option_is_validated(toys) -> None:
    spec = Spec.from_dict(toys.toy_spec(sync_batchnorm=True))
    assert spec.section("train").sync_batchnorm is True
    with pytest.raises(AnchorageError, match="train.sync_batchnorm: expected a boolean"):
        Spec.from_dict(toys.toy_spec(sync_batchnorm="yes"))


@pytest.mark.slow
def test_two_cpu_ranks_with_sync_batchnorm_exit_2(toys, tmp_path: Path) -> None:
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump(toys.toy_spec(sync_batchnorm=True, max_iters=1)))
    cmd = [sys.executable, str(LAUNCHER), str(ROOT / "tools" / "train.py"), str(spec_file),
           "--work-dir", str(tmp_path / "w"), "--device", "cpu", "--no-progress"]  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}  # fmt: skip
    procs = [
        subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for r in range(2)
    ]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [2, 2], errs
    assert all("SyncBatchNorm runs on CUDA only" in e and "Traceback" not in e for e in errs)
