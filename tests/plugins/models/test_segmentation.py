"""semantic_segmentation: crops (labels never interpolated), tiled eval, losses, aux head."""

from __future__ import annotations

import pytest
import torch

from anchorage.core import build_component
from anchorage.core.errors import DataError, SpecError
from anchorage.plugins.models.segmentation import SegmentationModel, SegmentationOptions
from anchorage.plugins.models.tiling import sliding_window

BACKBONE = {
    "type": "resnet18",
    "norm": "bn",
    "trainable_layers": 5,
    "return_layers": ["layer3", "layer4"],
}


class RampModel(SegmentationModel):
    """Output channel 0 = input channel 0 + row index within the processed tile."""

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = torch.arange(x.shape[-2], dtype=x.dtype).view(1, 1, -1, 1)
        return {"out": x[:, :2] + rows}


def _ramp_model(crop: tuple[int, int] | None, tile: tuple[int, int] | None = None) -> RampModel:
    options = SegmentationOptions(num_classes=1, crop_size=crop, tile_size=tile, tile_overlap=0.5)
    return RampModel(options)


def test_train_crop_keeps_labels_exact() -> None:
    torch.manual_seed(0)
    model = _ramp_model((16, 12)).train()
    masks = [torch.randint(0, 4, (30, 40)), torch.randint(0, 4, (10, 9))]
    images = [m.float().expand(3, -1, -1) / 10 for m in masks]  # image encodes its label
    x, y = model.crop_batch(images, [{"semantic_mask": m} for m in masks])
    assert x.shape == (2, 3, 16, 12) and y.shape == (2, 16, 12) and y.dtype == torch.int64
    valid = y != 255
    torch.testing.assert_close(x[:, 0][valid] * 10, y[valid].float())  # aligned, not resampled
    assert set(y[0].unique().tolist()) <= {0, 1, 2, 3}  # large image: a crop, no padding
    assert (y[1] == 255).sum() == 16 * 12 - 10 * 9  # small image: padded with ignore
    assert (x[1][:, y[1] == 255] == 0).all()


def test_eval_tiles_large_images_and_pads_batches() -> None:
    model = _ramp_model((8, 8)).eval()
    big = torch.rand(3, 20, 13)
    out = model([big])["out"]
    expected = sliding_window(lambda t: model.predict(t)["out"], big[None], (8, 8), (4, 4))
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(out, model.predict(big[None])["out"])  # tiles differ from 1 pass
    whole = _ramp_model((8, 8), tile=(20, 16)).eval()  # tiles larger than the training crop
    torch.testing.assert_close(whole([big])["out"], model.predict(big[None])["out"])
    small = [torch.rand(3, 6, 5), torch.rand(3, 8, 7)]
    out = model(small)["out"]
    assert out.shape == (2, 2, 8, 7)
    torch.testing.assert_close(out[0, :, :6, :5], model.predict(small[0][None])["out"][0])


def test_fcn_model_losses_aux_and_eval_shape() -> None:
    torch.manual_seed(0)
    model = build_component(
        "model",
        {
            "type": "semantic_segmentation",
            "num_classes": 3,
            "backbone": BACKBONE,
            "head": {"type": "fcn_head"},
            "aux_head": {"type": "tv_fcn_head"},
            "aux_weight": 0.4,
            "crop_size": [64, 64],
        },
    )
    assert model.head.cfg.in_feature == "c5" and model.head.cfg.stride == 32
    assert model.aux_head.cfg.in_feature == "c4" and model.aux_head.cfg.in_channels == 256
    images = [torch.rand(3, 50, 70), torch.rand(3, 90, 80)]
    targets = [{"semantic_mask": torch.randint(0, 4, im.shape[1:])} for im in images]
    losses = model.train()(images, targets)
    assert set(losses) == {"loss_seg", "loss_aux"}
    sum(losses.values()).backward()
    assert model.backbone.body.conv1.weight.grad is not None
    with torch.no_grad():
        out = model.eval()(images)["out"]
    assert out.shape == (2, 4, 90, 80) and torch.isfinite(out).all()
    with pytest.raises(DataError, match="semantic_mask"):
        model.train()(images, [{}, {}])


def test_unknown_feature_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="c9"):
        build_component(
            "model",
            {
                "type": "semantic_segmentation",
                "num_classes": 1,
                "backbone": BACKBONE,
                "head": {"type": "fcn_head"},
                "feature": "c9",
            },
        )


@pytest.mark.parametrize("name", ["fcn_r18_shapes.yaml", "unet_shapes.yaml"])
def test_shapes_specs_build(name: str) -> None:
    from anchorage.core import build_model, load_spec

    spec = load_spec(name)
    model = build_model(spec)
    assert model.cfg.num_classes == 3 and spec.section("eval").metrics[0].type == "seg_miou"
