from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from anchorage.core import load_checkpoint, read_checkpoint, save_checkpoint
from anchorage.core.errors import CheckpointError


def test_round_trip_is_atomic_and_weights_only(tmp_path: Path) -> None:
    model = nn.Linear(3, 2)
    path = save_checkpoint(tmp_path / "ck" / "m.pt", {"model": model.state_dict(), "epoch": 3})
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.pt"]  # no temp file left
    other = nn.Linear(3, 2)
    data = load_checkpoint(other, path)
    assert data["epoch"] == 3 and data["format"] == "anchorage"
    assert torch.equal(other.weight, model.weight)


def test_failed_write_keeps_previous_file(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", {"model": {"w": torch.ones(1)}})

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint(path, {"model": Unsaveable()})
    assert torch.equal(read_checkpoint(path)["model"]["w"], torch.ones(1))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_mismatch_lists_keys_and_shapes(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", {"model": nn.Linear(3, 2).state_dict()})
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(nn.Sequential(nn.Linear(4, 2)), path)
    message = str(exc.value)
    assert "missing keys (2):\n    0.bias\n    0.weight" in message
    assert "unexpected keys (2)" in message


def test_shape_mismatch(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", {"model": nn.Linear(3, 2).state_dict()})
    with pytest.raises(CheckpointError, match=r"weight: checkpoint \(2, 3\) vs model \(2, 4\)"):
        load_checkpoint(nn.Linear(4, 2), path)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_code_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"model": _Evil(marker)}))
    torch.save({"model": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match="refused to load.*nothing in it was run"):
        read_checkpoint(path)
    assert not marker.exists()


def test_missing_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        read_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable checkpoint"):
        read_checkpoint(tmp_path / "junk.pt")
