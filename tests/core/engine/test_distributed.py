"""tools/train.py as torchrun runs it: 2 CPU processes (gloo) match one process.

The two ranks are started directly with the environment torchrun gives its workers (RANK,
LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): the same code path, without the cost of
torchrun's agent process on a 2-core CI machine.
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

from anchorage.core import Spec, read_checkpoint
from anchorage.core.engine import train

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]
LAUNCHER = Path(__file__).with_name("launch_tool.py")


def ddp_spec(toys, batch_size: int) -> dict:
    spec = toys.toy_spec(
        epochs=1,
        max_iters=2,
        optimizer={"type": "sgd", "lr": 0.1, "momentum": 0.9},
        log_interval=1,
        log_images=0,
    )
    spec["model"]["dropout"] = 0.0
    for split in ("train", "val"):
        spec["data"][split].update(batch_size=batch_size, shuffle=False)
    return spec


def test_two_gloo_ranks_equal_one_process(toys, tmp_path: Path) -> None:
    # one process, global batch 2: images (0, 1) then (2, 3)
    single = train(Spec.from_dict(ddp_spec(toys, 2)), tmp_path / "single")
    # two ranks, batch 1 each: rank 0 sees 0, 2 and rank 1 sees 1, 3 (unshuffled shards);
    # DDP averages the gradients, so both runs take the same two steps
    spec_file = tmp_path / "ddp.yaml"
    spec_file.write_text(yaml.safe_dump(ddp_spec(toys, 1)))
    cmd = [
        sys.executable, str(LAUNCHER), str(ROOT / "tools" / "train.py"), str(spec_file),
        "--work-dir", str(tmp_path / "ddp"), "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    outputs = run_ranks(cmd, world_size=2)
    a = read_checkpoint(tmp_path / "single" / "last.pt")
    b = read_checkpoint(tmp_path / "ddp" / "last.pt")
    assert a["iteration"] == b["iteration"] == 2
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, atol=1e-6, rtol=0, msg=key)
    moved = read_checkpoint(tmp_path / "ddp" / "last.pt")["model"]["head.weight"]
    assert not torch.equal(moved, torch.zeros_like(moved))
    # each rank's RNG state is kept for an exact resume of the same job size
    assert len(b["rng_ranks"]) == 2
    assert not torch.equal(b["rng_ranks"][0]["torch"], b["rng_ranks"][1]["torch"])
    assert torch.equal(b["rng"]["torch"], b["rng_ranks"][0]["torch"])
    # evaluation gathered both ranks' shards: the same numbers as one process
    assert b["metrics"] == pytest.approx(single["metrics"])
    # rank 0 alone logged: one train line per step, logged losses averaged over ranks
    lines = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert sum('"train"' in x for x in lines) == 2
    assert sum(out.count("COCO bbox") for out in outputs) == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(cmd: list[str], world_size: int) -> list[str]:
    """Start ``cmd`` once per rank with torchrun's environment; return each rank's stdout."""
    base = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "WORLD_SIZE": str(world_size),
        "LOCAL_WORLD_SIZE": str(world_size),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }
    procs = [
        subprocess.Popen(
            cmd,
            env={**base, "RANK": str(r), "LOCAL_RANK": str(r)},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(world_size)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    for rank, (p, (_out, err)) in enumerate(zip(procs, results)):
        assert p.returncode == 0, f"rank {rank} failed:\n{err[-3000:]}"
    return [out for out, _err in results]
