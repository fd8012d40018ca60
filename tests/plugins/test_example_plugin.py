"""A plugin package installed through a real entry point supplies a centre matcher, a stride
box coder, a class-agnostic postprocessor, a GIoU box loss and a focal dense loss; each goes
into the demo spec by one ``--set`` line and trains, and each passes the conformance kit.

The package lives in ``tests/data/example_plugin``; its modules are the README's "Writing a
plugin" examples, word for word.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torchvision.ops import box_iou

from anchorage.core import CompositionError, build_component
from anchorage.core.interfaces import Anchors, GroundTruth
from anchorage.core.plugins import register_plugin, unregister_plugin
from anchorage.core.registry import registry_for
from anchorage.core.testing import check_entry
from anchorage.plugins.models.single_shot import _TINY

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tests" / "data" / "example_plugin" / "anchorage_example"
MODULES = ("matcher", "coder", "losses")
ENTRIES = (  # kind, name, module
    ("matcher", "center_matcher", "matcher"),
    ("box_coder", "stride_ltrb", "coder"),
    ("postprocessor", "class_agnostic_nms", "coder"),
    ("loss", "example_giou", "losses"),
    ("loss", "example_focal", "losses"),
)


def load(name: str):  # noqa: ANN201
    """The package's module ``name``, imported from its file."""
    spec = importlib.util.spec_from_file_location(
        f"anchorage_example.{name}", PACKAGE / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_examples_are_the_packaged_modules() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Writing a plugin")
    section = readme[start : readme.index("\n## ", start + 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    packaged = [(PACKAGE / f"{name}.py").read_text() for name in MODULES]
    assert [b for b in blocks if b in packaged] == packaged


def test_readme_names_every_registry_key_and_role_interface() -> None:
    from anchorage.core import REGISTRIES, BoxLoss, DenseHead, DenseLoss, DensePostprocessor
    from anchorage.core.interfaces import set_prediction as sets
    from anchorage.core.interfaces.classification import CLASSIFICATION_ROLES
    from anchorage.core.interfaces.roles import ROLE_INTERFACES

    set_roles = (sets.PositionalEncoding, sets.SetTransformer, sets.SetHead, sets.SetLoss,
                 sets.SetPostprocessor)  # fmt: skip

    readme = (ROOT / "README.md").read_text()
    start = readme.index("### Registry keys and roles")
    table = readme[start : readme.index("\n### ", start + 1)]
    for key in REGISTRIES:
        assert f"`{key}`" in table, key
    dense = (DenseHead, DenseLoss, BoxLoss, DensePostprocessor)
    for interface in (*dense, *ROLE_INTERFACES, *set_roles, *CLASSIFICATION_ROLES):
        assert f"`{interface.__name__}`" in table, interface.__name__


@pytest.fixture
def example_plugin() -> Iterator[None]:
    """The package's modules registered in this process, as its entry points would."""
    names = [register_plugin(load(m), name=f"anchorage_example.{m}") for m in MODULES]
    yield
    for kind, name, _ in ENTRIES:
        registry_for(kind).unregister(name)
    for name in names:
        unregister_plugin(name)


@pytest.mark.parametrize(("kind", "name", "module"), ENTRIES)
def test_example_components_pass_the_kit(
    example_plugin: None, kind: str, name: str, module: str
) -> None:
    assert registry_for(kind).get(name).provider == f"anchorage_example.{module}"
    check_entry(kind, name)


def _batch() -> tuple[list[torch.Tensor], list[dict]]:
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 64, 64, generator=g), torch.rand(3, 64, 64, generator=g)]
    box = {"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1])}
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    return images, [box, empty]


def test_coder_loss_and_postprocessor_make_a_detector(example_plugin: None) -> None:
    slots = {
        "head": {"type": "ssd_head", "background": False},  # sigmoid logits [B,A,C]
        "box_coder": {"type": "stride_ltrb"},
        "loss": {"type": "example_focal"},
        "postprocessor": {"type": "class_agnostic_nms", "score_thresh": 0.0},
    }
    model = build_component("model", {"type": "single_shot", **_TINY, **slots})
    images, targets = _batch()
    losses = model.train()(images, targets)
    assert set(losses) == {"loss_focal", "loss_giou"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    with torch.no_grad():
        detections = model.eval()(images)
    for d in detections:
        assert len(d["boxes"]) > 0 and set(d["labels"].tolist()) <= {1, 2}
        iou = box_iou(d["boxes"], d["boxes"]).fill_diagonal_(0)
        assert (iou <= 0.5).all()  # one NMS over all classes


def test_postprocessor_without_background_meets_a_loss_with_one(example_plugin: None) -> None:
    slots = {"postprocessor": {"type": "class_agnostic_nms"}}  # masked_l1: background column
    with pytest.raises(CompositionError) as info:
        build_component("model", {"type": "single_shot", **_TINY, **slots})
    assert info.value.paths == ("model.loss", "model.postprocessor")


def test_example_matcher_agrees_with_centre_in_box() -> None:
    module = load("matcher")
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
        "example_coder = anchorage_example.coder\n"
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
        ("model.box_coder={type: stride_ltrb}", {"loss_classification", "loss_bbox_regression"}),
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
