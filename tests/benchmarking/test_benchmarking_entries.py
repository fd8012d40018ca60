"""Entry resolution, torchvision baselines (layouts, segmentation adapter) and suites."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import functional as F
from torchvision.ops.misc import FrozenBatchNorm2d

from anchorage.benchmarking import EntryRequest, Settings, load_suite, make_settings
from anchorage.benchmarking.entries import SegmentationAdapter, build_torchvision
from anchorage.core.errors import AnchorageError, SpecError


def test_segmentation_adapter_gives_anchorage_io_and_torchvision_reference_loss() -> None:
    torch.manual_seed(0)
    model = build_torchvision("fcn_resnet50", {"num_classes": 3, "aux_loss": True})
    assert isinstance(model, SegmentationAdapter)
    images = [torch.rand(3, 32, 32) for _ in range(2)]
    masks = torch.randint(0, 3, (2, 32, 32))
    masks[:, :4] = 255  # ignored pixels
    model.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    with torch.no_grad():
        out = model(images)
        ref = model.model((torch.stack(images) - mean) / std)  # torchvision: normalised input
    assert [list(o) for o in out] == [["sem_seg"]] * 2
    assert torch.equal(torch.stack([o["sem_seg"] for o in out]), ref["out"])
    model.train()
    torch.manual_seed(1)
    loss = model(images, [{"semantic_mask": m} for m in masks])
    torch.manual_seed(1)
    raw = model.model((torch.stack(images) - mean) / std)
    expected = F.cross_entropy(raw["out"], masks, ignore_index=255) + 0.5 * F.cross_entropy(
        raw["aux"], masks, ignore_index=255
    )
    assert list(loss) == ["loss_seg"]
    torch.testing.assert_close(loss["loss_seg"], expected)


def test_pretrained_layout_freezes_like_torchvision_fine_tuning() -> None:
    plain = build_torchvision("fasterrcnn_mobilenet_v3_large_320_fpn")
    layout = build_torchvision("fasterrcnn_mobilenet_v3_large_320_fpn", {"pretrained_layout": True})
    frozen = [m for m in layout.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert frozen and not any(isinstance(m, FrozenBatchNorm2d) for m in plain.modules())
    trainable = [sum(p.numel() for p in m.parameters() if p.requires_grad) for m in (plain, layout)]
    assert trainable[1] < trainable[0]


def test_bad_builder_arguments_are_a_user_error() -> None:
    name = "fasterrcnn_mobilenet_v3_large_320_fpn"  # torchvision would drop the typo silently
    with pytest.raises(SpecError, match=f"tv:{name}: unknown builder arguments \\['min_sise'\\]"):
        build_torchvision(name, {"min_sise": 64})
    with pytest.raises(SpecError, match="tv:fcn_resnet50: unknown builder arguments"):
        build_torchvision("fcn_resnet50", {"no_such": 1})
    with pytest.raises(AnchorageError, match="unknown benchmark entry 'tv:resnet50'"):
        build_torchvision("resnet50")


def test_labels() -> None:
    assert EntryRequest(source="specs/ssd300_vgg16_coco.yaml").name == "ssd300_vgg16_coco"
    assert EntryRequest(source="tv:ssd300_vgg16").name == "tv:ssd300_vgg16"
    assert EntryRequest(source="tv:ssd300_vgg16", label="ref").name == "ref"


def test_suite_entries_settings_and_cli_overrides(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("model: {type: x}\n")
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "settings: {batch_sizes: [1, 8], rounds: 5, train: true}\n"
        "entries:\n"
        "  - tv:ssd300_vgg16\n"
        "  - {entry: mine.yaml, twin: 'tv:ssd300_vgg16', set: [model.a=1]}\n"
        "  - {entry: tv:fcn_resnet50, kwargs: {num_classes: 21}}\n"
    )
    loaded = load_suite(suite)
    a, b, c = loaded.entries
    assert a.source == "tv:ssd300_vgg16" and a.kwargs == {}
    assert b.source == str(tmp_path / "mine.yaml") and b.name == "mine"
    assert b.twin == "tv:ssd300_vgg16" and b.overrides == ("model.a=1",)
    assert c.kwargs == {"num_classes": 21}
    settings = make_settings(loaded.settings, {"rounds": 2, "batch_sizes": None})
    assert settings == Settings(batch_sizes=(1, 8), rounds=2, train=True)
    assert settings.train_sizes() == (1, 8)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("settings: {rounds: 0}\n", "settings.rounds: 'rounds' must be >= 1"),
        ("settings: {batch_sizes: 8}\n", "settings.batch_sizes: expected tuple[int, ...]"),
        ("settings: {device: tpu}\n", "expected 'cpu', 'cuda' or 'cuda:N'"),
        ("entries: [{entry: a.yaml, sets: []}]\n", "entries[0].sets: unknown parameter"),
        ("entrys: []\n", "unknown suite keys ['entrys']"),
    ],
)
def test_suite_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(text)
    with pytest.raises(SpecError) as info:
        load_suite(suite)
    assert str(info.value).startswith(str(suite)) and message in str(info.value)
