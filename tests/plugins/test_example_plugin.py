"""A plugin package installed through a real entry point supplies a centre matcher, a GIoU box
loss and a focal dense loss; each goes into the demo spec by one ``--set`` line and trains.

The package lives in ``tests/data/example_plugin``; its matcher module is the README's
"Writing a plugin" example, word for word.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from anchorage.core import build_component
from anchorage.core.interfaces import Anchors, GroundTruth

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tests" / "data" / "example_plugin" / "anchorage_example"


def test_readme_example_is_the_packaged_matcher() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Writing a plugin") :]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert block == (PACKAGE / "matcher.py").read_text()


def test_example_matcher_agrees_with_centre_in_box() -> None:
    spec = importlib.util.spec_from_file_location("example_matcher", PACKAGE / "matcher.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ours = module.CenterMatcher(module.CenterMatcher.Config(radius=0.8))
    builtin = build_component("matcher", {"type": "centre_in_box", "radius": 0.8})
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=g) * 100
    anchors = Anchors.single_level(torch.cat([xy - 4, xy + 4], -1))
    gxy = torch.rand(3, 5, 2, generator=g) * 70
    boxes = torch.cat([gxy, gxy + 5 + torch.rand(3, 5, 2, generator=g) * 30], -1)
    valid = torch.rand(3, 5, generator=g) > 0.2
    gt = GroundTruth(boxes, torch.ones(3, 5, dtype=torch.int64), valid)
    a, b = ours(anchors, gt).matched, builtin(anchors, gt).matched
    assert (a >= 0).sum() > 20
    assert torch.equal(a >= 0, b >= 0)
    empty = GroundTruth(boxes[:, :0], valid[:, :0].long(), valid[:, :0])
    assert (ours(anchors, empty).matched == -1).all()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package 'installed': its files and a dist-info with entry points on a path."""
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(PACKAGE, site / "anchorage_example")
    dist = site / "anchorage_example-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: anchorage-example\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[anchorage.plugins]\n"
        "example_matcher = anchorage_example.matcher\n"
        "example_losses = anchorage_example.losses\n"
    )
    return site


SHRINK = [
    "data.train.dataset.num_images=4",
    "data.val.dataset.num_images=2",
    "data.train.batch_size=2",
    "data.val.batch_size=2",
    "train.max_iters=2",
    "train.warmup_iters=1",
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "line,loss_keys",
    [
        ("model.matcher.type=center_matcher", {"loss_classification", "loss_bbox_regression"}),
        (
            "model.loss.box_loss={type: example_giou}",
            {"loss_classification", "loss_bbox_regression"},
        ),
        ("model.loss.type=example_focal", {"loss_focal", "loss_giou"}),
    ],
)
def test_plugin_component_trains_by_one_spec_line(
    site: Path, tmp_path: Path, line: str, loss_keys: set
) -> None:
    cache = tmp_path / "cache"
    argv = ["specs/tiny_ssd_shapes.yaml", "--work-dir", str(tmp_path / "w"), "--no-progress"]
    for item in [*SHRINK, f"data.train.dataset.root={cache}", f"data.val.dataset.root={cache}"]:
        argv += ["--set", item]
    argv += ["--set", line]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("ANCHORAGE_DISABLE_PLUGIN_AUTOLOAD", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    result = subprocess.run(
        [sys.executable, "tools/train.py", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    logged = [json.loads(x) for x in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in logged if loss_keys <= set(r)]
    assert train, logged
    assert all(torch.isfinite(torch.tensor(r[k])) for r in train for k in loss_keys)
    assert json.loads(result.stdout.strip().splitlines()[-1])["iteration"] == 2
