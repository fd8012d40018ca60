"""``set_prediction`` with DETR's components equals transformers' ``DetrForObjectDetection``.

transformers' model (random weights, its non-timm ResNet-18-shaped backbone) is converted with
the registered converter; both run on the same preprocessed batch of two images of different
sizes (so the padding mask matters), in eval mode (detections) and train mode (losses).
"""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import torch
import yaml

transformers = pytest.importorskip("transformers")
pytest.importorskip("scipy")

from anchorage.core import build_component, build_model, load_checkpoint, load_spec  # noqa: E402
from anchorage.core.cli import run_tool  # noqa: E402
from anchorage.plugins.models.set_prediction import padding_mask  # noqa: E402
from anchorage.plugins.set_prediction.convert import convert_transformers_detr  # noqa: E402

NUM_CLASSES, QUERIES, DIM = 3, 10, 32


def _randomise_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """Random frozen-BN statistics and norm affine terms (defaults would hide a mis-mapping)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if type(module).__name__.endswith("FrozenBatchNorm2d"):
                n = module.weight.shape[0]
                module.weight.copy_(1 + 0.1 * torch.randn(n, generator=g))
                module.bias.copy_(0.1 * torch.randn(n, generator=g))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                module.running_var.copy_(1 + 0.2 * torch.rand(n, generator=g))
            elif isinstance(module, torch.nn.LayerNorm):
                n = module.weight.shape[0]
                module.weight.copy_(1 + 0.3 * torch.randn(n, generator=g))
                module.bias.copy_(0.3 * torch.randn(n, generator=g))


def _hf_detr(aux_loss: bool = False):  # noqa: ANN202
    cfg = transformers.DetrConfig(
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        backbone_config=transformers.ResNetConfig(
            depths=[2, 2, 2, 2],
            hidden_sizes=[64, 128, 256, 512],
            layer_type="basic",
            out_features=["stage4"],
        ),
        num_labels=NUM_CLASSES,
        num_queries=QUERIES,
        d_model=DIM,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        auxiliary_loss=aux_loss,
    )
    torch.manual_seed(0)
    model = transformers.DetrForObjectDetection(cfg)
    _randomise_norms(model)
    return model


_SPEC = {
    "type": "set_prediction",
    "num_classes": NUM_CLASSES,
    "num_queries": QUERIES,
    "preprocess": {"min_size": [96], "max_size": 160, "size_divisible": 1},
    "backbone": {"type": "resnet18", "return_layers": ["layer4"], "trainable_layers": 5},
    "transformer": {
        "type": "detr_transformer",
        "hidden_dim": DIM,
        "num_heads": 4,
        "encoder_layers": 2,
        "decoder_layers": 2,
        "ffn_dim": 64,
        "dropout": 0.0,
    },
}


def _ours(aux_loss: bool = False) -> torch.nn.Module:
    return build_component("model", {**_SPEC, "aux_loss": aux_loss})


def _pair(hf: torch.nn.Module, aux_loss: bool = False) -> torch.nn.Module:
    ours = _ours(aux_loss)
    ours.load_state_dict(convert_transformers_detr(hf.state_dict()), strict=True)
    return ours


def _images() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.rand(3, 96, 128, generator=g), torch.rand(3, 120, 96, generator=g)]


def _targets() -> list[dict[str, torch.Tensor]]:
    return [
        {"boxes": torch.tensor([[4.0, 6.0, 60.0, 50.0], [50.0, 20.0, 120.0, 90.0]]),
         "labels": torch.tensor([1, 3])},
        {"boxes": torch.tensor([[10.0, 30.0, 80.0, 110.0]]), "labels": torch.tensor([2])},
    ]  # fmt: skip


def _hf_inputs(ours: torch.nn.Module, images, targets=None):  # noqa: ANN001, ANN202
    batch = ours.preprocess(images, targets)
    mask = (~padding_mask(batch.images, batch.image_sizes)).long()
    return batch, mask


def _transformer_inputs(ours: torch.nn.Module, batch):  # noqa: ANN001, ANN202
    from anchorage.plugins.models.set_prediction import level_mask

    features = ours.input_projection(list(ours.backbone(batch.images).values()))
    mask = padding_mask(batch.images, batch.image_sizes)
    masks = [level_mask(mask, f.shape[-2:]) for f in features]
    return features, masks, [ours.positional_encoding(m) for m in masks]


def test_detections_equal_transformers() -> None:
    hf = _hf_detr().eval()
    ours = _pair(hf).eval()
    images = _images()
    batch, mask = _hf_inputs(ours, images)
    with torch.no_grad():
        theirs = hf(pixel_values=batch.images, pixel_mask=mask)
        mine = ours.predict(batch.images, batch.image_sizes)
        found = ours(images)
    # our no-object column is 0, theirs the last
    torch.testing.assert_close(
        mine["logits"][-1], theirs.logits.roll(1, dims=-1), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(mine["boxes"][-1], theirs.pred_boxes, atol=1e-4, rtol=0)

    processor = transformers.DetrImageProcessor()
    sizes = [tuple(im.shape[-2:]) for im in images]
    # their boxes are relative to the unpadded image: scale by the original sizes
    expected = processor.post_process_object_detection(theirs, threshold=0.0, target_sizes=sizes)
    for got, want in zip(found, expected):
        order = want["scores"].argsort(descending=True, stable=True)
        torch.testing.assert_close(got["scores"], want["scores"][order], atol=1e-4, rtol=0)
        assert torch.equal(got["labels"], want["labels"][order] + 1)
        torch.testing.assert_close(got["boxes"], want["boxes"][order], atol=1e-3, rtol=1e-5)
    assert all(len(d["boxes"]) == QUERIES for d in found)


def test_training_losses_equal_transformers() -> None:
    """The last layer's loss terms (transformers' matcher and criterion, no auxiliary layers:
    see the note below for why)."""
    hf = _hf_detr().train()
    ours = _pair(hf).train()
    images, targets = _images(), _targets()
    batch, mask = _hf_inputs(ours, images, targets)
    labels = []
    for t, (h, w) in zip(batch.targets, batch.image_sizes):
        xyxy = t["boxes"] / torch.tensor([w, h, w, h])
        cxcywh = torch.cat([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], dim=1)
        labels.append({"class_labels": t["labels"] - 1, "boxes": cxcywh})
    theirs = hf(pixel_values=batch.images, pixel_mask=mask, labels=labels)
    mine = ours(images, targets)
    assert set(mine) == {"loss_classification", "loss_bbox_l1", "loss_giou"}
    torch.testing.assert_close(
        mine["loss_classification"], theirs.loss_dict["loss_ce"], atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(
        mine["loss_bbox_l1"], 5 * theirs.loss_dict["loss_bbox"], atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(
        mine["loss_giou"], 2 * theirs.loss_dict["loss_giou"], atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(sum(mine.values()), theirs.loss, atol=1e-5, rtol=1e-5)


def test_auxiliary_layers_follow_the_original_detr() -> None:
    """With ``auxiliary_loss=True`` transformers feeds each layer's LayerNorm output into the
    next decoder layer; the original DETR (and we) normalise only the copy the heads read, so
    the stack is the same with or without auxiliary losses. Ours with ``aux_loss`` therefore
    equals their plain model and differs from their auxiliary one after the first layer."""
    hf = _hf_detr().eval()
    ours = _pair(hf, aux_loss=True).eval()
    batch, mask = _hf_inputs(ours, _images())
    with torch.no_grad():
        plain = hf(pixel_values=batch.images, pixel_mask=mask).last_hidden_state
        aux = _hf_detr(aux_loss=True).eval()
        aux.load_state_dict(hf.state_dict())
        normed = aux(pixel_values=batch.images, pixel_mask=mask).last_hidden_state
        mine = ours.transformer(*_transformer_inputs(ours, batch)).hidden
    assert mine.shape[0] == 2
    torch.testing.assert_close(mine[-1], plain, atol=1e-4, rtol=0)
    assert (normed - plain).abs().max() > 1e-3


def test_convert_weights_tool_from_transformers(tmp_path) -> None:
    """``tools/convert_weights.py --from transformers``: a transformers state-dict file and a
    spec give a checkpoint whose model predicts what transformers' does."""
    hf = _hf_detr().eval()
    src, spec_path, out = tmp_path / "detr.pth", tmp_path / "detr.yaml", tmp_path / "ours.pt"
    torch.save(hf.state_dict(), src)
    spec_path.write_text(yaml.safe_dump({"model": _SPEC}))
    tool = Path(__file__).resolve().parents[3] / "tools" / "convert_weights.py"
    main = runpy.run_path(str(tool))["main"]
    argv = [str(src), "--from", "transformers", "--spec", str(spec_path), "--out", str(out)]
    assert run_tool(main, argv) == 0
    ours = build_model(load_spec(spec_path)).eval()
    load_checkpoint(ours, out)
    batch, mask = _hf_inputs(ours, _images())
    with torch.no_grad():
        theirs = hf(pixel_values=batch.images, pixel_mask=mask)
        mine = ours.predict(batch.images, batch.image_sizes)
    torch.testing.assert_close(mine["boxes"][-1], theirs.pred_boxes, atol=1e-4, rtol=0)


def test_a_transformer_returning_the_wrong_thing_is_named() -> None:
    """The skeleton checks the transformer's return and blames the slot's component."""
    from anchorage.core.errors import PluginError

    ours = _ours().eval()
    real = ours.transformer.forward
    ours.transformer.forward = lambda *a, **k: real(*a, **k).hidden  # a bare tensor
    with pytest.raises(
        PluginError, match=r"model.transformer \(detr_transformer from .*SetDecoding"
    ):
        ours(_images())
