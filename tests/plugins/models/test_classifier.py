"""The ``classifier`` and ``localizer`` skeletons: I/O formats, batching by size, losses,
slot errors, timm backbones (SENet, Xception) and the notes' CNN families."""

from __future__ import annotations

import pytest
import torch

from anchorage.core.build import build_component
from anchorage.core.errors import DataError, PluginError

LENET = {"type": "lenet", "activation": "relu"}


def classifier(**params):
    torch.manual_seed(0)
    return build_component("model", {"type": "classifier", "num_classes": 3, **params})


def images(*sizes):
    g = torch.Generator().manual_seed(1)
    return [torch.rand(3, h, w, generator=g) for h, w in sizes]


def test_eval_outputs_are_topk_detections_without_boxes() -> None:
    model = classifier(backbone=LENET, topk=2).eval()
    with torch.no_grad():
        out = model(images((32, 32), (32, 32)))
    for d in out:
        assert set(d) == {"labels", "scores", "probs"}
        assert d["labels"].dtype == torch.int64 and d["labels"].shape == (2,)
        assert ((d["labels"] >= 1) & (d["labels"] <= 3)).all()
        assert torch.allclose(d["probs"].sum(), torch.tensor(1.0))
        assert d["labels"][0] == d["probs"].argmax() + 1  # top-1, labels 1..C
        assert torch.equal(d["scores"], d["probs"][d["labels"] - 1])


def test_mixed_sizes_run_per_size_in_order() -> None:
    model = classifier(backbone=LENET).eval()
    batch = images((32, 32), (40, 36), (32, 32))
    with torch.no_grad():
        together = model(batch)
        alone = [model([im])[0] for im in batch]
    for a, b in zip(together, alone):
        assert torch.allclose(a["probs"], b["probs"], atol=1e-6)


def test_image_size_resizes_inside_the_model() -> None:
    model = classifier(backbone=LENET, image_size=(32, 32)).eval()
    big = images((64, 64))[0]
    small = torch.nn.functional.interpolate(
        big[None], size=(32, 32), mode="bilinear", antialias=True
    )[0]
    with torch.no_grad():
        assert torch.allclose(model([big])[0]["probs"], model([small])[0]["probs"], atol=1e-6)


def test_train_mode_loss_and_label_smoothing() -> None:
    model = classifier(backbone=LENET, loss={"type": "classification_ce", "label_smoothing": 0.1})
    targets = [{"label": torch.tensor(1)}, {"label": torch.tensor(3)}]
    losses = model.train()(images((32, 32), (32, 32)), targets)
    assert set(losses) == {"loss_cls"} and losses["loss_cls"].dim() == 0
    losses["loss_cls"].backward()
    assert model.head.mlp[-1].weight.grad is not None


def test_missing_label_is_a_one_line_data_error() -> None:
    model = classifier(backbone=LENET).train()
    with pytest.raises(DataError, match="target 0 has no 'label'"):
        model(images((32, 32)), [{"labels": torch.tensor([1])}])


def test_cross_entropy_matches_torch_and_skips_uncounted() -> None:
    loss = build_component("loss", {"type": "classification_ce", "label_smoothing": 0.2})
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([1, 3, 0, 2])
    expected = torch.nn.functional.cross_entropy(
        logits[[0, 1, 3]], torch.tensor([0, 2, 1]), label_smoothing=0.2
    )
    assert torch.allclose(loss(logits, labels)["loss_cls"], expected)


def test_a_head_returning_the_wrong_shape_names_its_slot(monkeypatch) -> None:
    model = classifier(backbone=LENET).eval()
    monkeypatch.setattr(model.head, "forward", lambda x: {"logits": torch.zeros(x.shape[0], 5)})
    with pytest.raises(PluginError, match=r"model.head \(linear_head from anchorage\).*\[1,3\]"):
        model(images((32, 32)))


def test_head_reset_parameters_changes_the_weights() -> None:
    model = classifier(backbone=LENET)
    before = model.head.mlp[-1].weight.detach().clone()
    model.head.reset_parameters()
    assert not torch.equal(before, model.head.mlp[-1].weight)
    assert torch.count_nonzero(model.head.mlp[-1].bias) == 0


def localizer():
    torch.manual_seed(0)
    return build_component("model", {"type": "localizer", "num_classes": 2, "backbone": LENET})


def test_localizer_outputs_one_detection_in_image_pixels() -> None:
    model = localizer().eval()
    with torch.no_grad():
        out = model(images((32, 48)))
    d = out[0]
    assert d["boxes"].shape == (1, 4) and d["scores"].shape == (1,) and d["labels"].shape == (1,)
    # the box head starts at the centred half-size box: cxcywh (0.5, 0.5, 0.5, 0.5)
    assert torch.allclose(d["boxes"][0], torch.tensor([12.0, 8.0, 36.0, 24.0]))
    assert d["probs"].shape == (2,)


def test_localizer_loss_terms_and_images_without_objects() -> None:
    model = localizer().train()
    targets = [
        {"boxes": torch.tensor([[4.0, 4.0, 20.0, 28.0]]), "labels": torch.tensor([2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    losses = model(images((32, 32), (32, 32)), targets)
    assert set(losses) == {"loss_cls", "loss_box", "loss_giou"}
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    empty = [targets[1], targets[1]]
    model.zero_grad()
    losses = model(images((32, 32), (32, 32)), empty)
    assert all(float(v.detach()) == 0.0 for v in losses.values())


def test_box_loss_is_zero_for_a_perfect_box() -> None:
    loss = build_component("loss", {"type": "box_l1_giou"})
    target = torch.tensor([[0.1, 0.2, 0.5, 0.6]])
    pred = torch.tensor([[0.3, 0.4, 0.4, 0.4]])
    out = loss(pred, target, torch.tensor([True]))
    assert float(out["loss_box"]) < 1e-5 and float(out["loss_giou"]) < 1e-5


@pytest.mark.parametrize(
    "backbone",
    [
        {"type": "nin", "channels": [16, 16, 32]},
        {"type": "timm", "model_name": "seresnet18"},
        {"type": "torchvision_features", "model": "alexnet"},
        {"type": "torchvision_features", "model": "googlenet"},
    ],
    ids=["nin", "timm-senet", "alexnet", "googlenet"],
)
def test_notes_families_train_a_step(backbone: dict) -> None:
    head = {"type": "nin_head"} if backbone["type"] == "nin" else {"type": "linear_head"}
    model = classifier(backbone=backbone, head=head).train()
    targets = [{"label": torch.tensor(1)}, {"label": torch.tensor(2)}]
    losses = model(images((64, 64), (64, 64)), targets)
    sum(losses.values()).backward()
    assert torch.isfinite(losses["loss_cls"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "backbone",
    [
        {"type": "timm", "model_name": "legacy_xception"},
        {"type": "torchvision_features", "model": "vgg11"},
        {"type": "torchvision_features", "model": "densenet121"},
    ],
    ids=["timm-xception", "vgg11", "densenet121"],
)
def test_notes_large_families_train_a_step(backbone: dict) -> None:
    test_notes_families_train_a_step(backbone)


def test_topk_and_the_true_class_are_drawn() -> None:
    from anchorage.core.engine.pictures import nothing_passes, with_ground_truth
    from anchorage.core.engine.visualize import draw_prediction

    model = classifier(backbone=LENET, topk=3).eval()
    image = torch.full((3, 32, 32), 0.5)
    with torch.no_grad():
        (out,) = model([image])
    plain = draw_prediction(image, {"sem_seg": torch.zeros(1, 32, 32)}, ["a", "b", "c"], 0.3, 96)
    drawn = draw_prediction(image, out, ["a", "b", "c"], 0.3, 96)
    assert drawn.shape == plain.shape == (3, 96, 96)
    rows = (drawn != plain).any(0).any(1).nonzero().flatten()
    assert rows.max() < 45  # three caption bands of 15 pixels, top-left
    assert nothing_passes(out, 0.99) is None  # a top-1 class is always an answer
    both = with_ground_truth(image, {"label": torch.tensor(2)}, drawn, ["a", "b", "c"], 96)
    assert both.shape == (3, 96, 96 * 2 + 4)
